"""Training: losses, schedules, optimisers, training methods and the trainer.

Methods (``standard``, ``pgd``, and the certified ``grad``/``rgs``/``pgpe``) implement
:class:`nobound.training.method.TrainingMethod` and are looked up by name with
:func:`nobound.training.method.create_method`; :class:`nobound.training.trainer.Trainer`
runs any of them with logging, checkpoints and bit-for-bit resume.
"""
