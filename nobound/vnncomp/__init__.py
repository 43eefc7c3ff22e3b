"""The VNN-COMP kit: result files, per-process deadlines, benchmark runs and consensus.

* :mod:`nobound.vnncomp.result_file` — the competition's result file, written once,
  atomically, never stale;
* :mod:`nobound.vnncomp.deadline` — a wall-clock budget counted from process start, with a
  watchdog that writes ``timeout`` and exits when the budget is spent;
* :mod:`nobound.vnncomp.benchmark` — instances CSV, per-instance runs, resume, summary
  and agreement with a published consensus.
"""
