"""Quickstart: train a small network, attack it, bound it and certify it — on the CPU, offline.

    python examples/quickstart.py

Uses the Fashion-MNIST subset shipped with nobound. Runtime: about 60 s of CPU time on a
2-core laptop CPU (most of it the 200-step, 5-restart evaluation PGD). Output of a run
(numbers vary slightly with the BLAS library):

    epoch 0: loss 1.628 train accuracy 0.463
    ...
    epoch 4: loss 0.582 train accuracy 0.801
    test accuracy 0.785
    eps 0.005: PGD accuracy 0.765, certified: ibp 0.545, deeppoly 0.765
"""

from __future__ import annotations

import numpy as np

from nobound.attack import EVALUATION_ATTACK, pgd_attack
from nobound.autodiff import Tensor, no_grad
from nobound.bounds import compute_bounds, linf_ball, margin_spec
from nobound.data import BatchLoader, load_dataset
from nobound.nn import build_model, kaiming_uniform
from nobound.training.losses import accuracy, cross_entropy
from nobound.training.optim import Adam


def main() -> None:
    train = load_dataset("fashion-mnist-embedded", "train")
    test = load_dataset("fashion-mnist-embedded", "test")
    model = kaiming_uniform(build_model("cnn3", train.input_shape, train.num_classes), seed=0)
    optimizer = Adam(dict(model.named_parameters()), lr=2e-3)
    loader = BatchLoader(train, batch_size=50, seed=0)
    for epoch in range(5):
        losses, accuracies = [], []
        for images, labels in loader.epoch(epoch):
            optimizer.zero_grad()
            logits = model(Tensor(images))
            loss = cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            accuracies.append(accuracy(logits, labels))
        print(f"epoch {epoch}: loss {np.mean(losses):.3f} train accuracy "
              f"{np.mean(accuracies):.3f}")

    model.eval()
    x, y = Tensor(test.images[:200]), test.labels[:200]
    with no_grad():
        print(f"test accuracy {accuracy(model(x), y):.3f}")
    eps = 0.005
    attack = pgd_attack(model, x, y, eps, EVALUATION_ATTACK, seed=0)
    with no_grad():
        correct = model(x).data.argmax(-1) == y
    robust_upper = float(np.mean(correct & ~np.asarray(attack.success)))
    certified = {}
    for method in ("ibp", "deeppoly"):
        with no_grad():
            bounds = compute_bounds(model, linf_ball(x, eps), method=method,
                                    spec=margin_spec(y, test.num_classes))
        certified[method] = float(np.mean(correct & (bounds.lower.data > 0).all(-1)))
    print(f"eps {eps}: PGD accuracy {robust_upper:.3f}, certified: "
          + ", ".join(f"{k} {v:.3f}" for k, v in certified.items()))
    assert certified["deeppoly"] <= robust_upper  # certified ≤ empirical robustness, always


if __name__ == "__main__":
    main()
