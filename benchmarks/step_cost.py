"""What one compiled step of the slots engine costs: its ops, a depth's first epoch, an epoch.

For the depths 1-4 of rings' space, one process with one TensorFlow thread (as a worker of a
two-worker sweep runs): the ops in the loop body of the compiled epoch program (one batch step),
the seconds of each depth's first epoch (tracing and TensorFlow's function instantiation, paid
once per depth by every worker; trainers of one depth share it whatever their width) and the milliseconds of a later epoch (the best of 5 x 8) for a
few shapes and numbers of running slots, on rings data as the default sweep has it (800 training
rows, batch 50, dropout 0.2, L2).

Run it on two checkouts, alternating, to compare them side by side (the machine's speed drifts):

    python -m benchmarks.step_cost
"""

from __future__ import annotations

import os
import time

SHAPES = ((1, 16, 1), (2, 32, 1), (3, 32, 2), (4, 16, 1), (4, 64, 2), (4, 128, 2))  # depth, width, running slots


def step_ops(trainer) -> int:  # noqa: ANN001
    """Ops in the largest function of the compiled epoch program's graph: its batch loop's body."""
    program = trainer._compiled.program  # the program shared by every trainer of this depth
    graph = program.get_concrete_function(*program.input_signature).graph
    return max(len(function.node_def) for function in graph.as_graph_def().library.function)


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from regsweep.data import make_rings
    from regsweep.engine import SlotTrainer, bucket_for
    from regsweep.space import TrialConfig

    data = make_rings(n=1000, seed=0)
    print("| depth | width | running slots | ops per step | the depth's first epoch (s) | epoch (ms) |")
    print("|---|---|---|---|---|---|")
    traced: set[int] = set()
    for depth, width, running in SHAPES:
        config = TrialConfig("l2", 1e-4, 0.2, depth, width, patience=10**6, max_epochs=10**6, batch_size=50)
        trainer = SlotTrainer(bucket_for(config, data), data, slots=running, batch_size=50, shuffle_seed=0)
        for slot in range(running):
            trainer.assign(slot, config, seed=slot)
        started = time.perf_counter()
        trainer.train_epoch()
        first = time.perf_counter() - started
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(8):
                trainer.train_epoch()
            best = min(best, (time.perf_counter() - started) / 8)
        first_text = "(traced above)" if depth in traced else f"{first:.2f}"
        traced.add(depth)
        print(f"| {depth} | {width} | {running} | {step_ops(trainer)} | {first_text} | {best * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
