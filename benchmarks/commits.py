"""How many write transactions (each one fsync on SQLite) one benchmark sweep makes, and of what.

One in-process regsweep run of the ``benchmarks.slots`` sweep (rings n=1000, the
``benchmarks.speed`` space, 60 trials, max 40 epochs, one worker, which is deterministic),
counting every committed transaction that wrote, by the tables it wrote to, through SQLite's
statement trace on each connection of the run's storage. Run it on two checkouts to compare:

    python -m benchmarks.commits
    PYTHONPATH=/path/to/other/checkout python /path/to/this/benchmarks/commits.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

def count_write_transactions() -> Counter[str]:
    """Count committed write transactions from now on, by the sorted tables each wrote to
    (every SQLAlchemy engine created afterwards is traced)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts: Counter[str] = Counter()

    @event.listens_for(Engine, "connect")
    def _trace(dbapi_connection: Any, record: Any) -> None:
        tables: set[str] = set()

        def statement(sql: str) -> None:
            text = sql.lstrip().upper()
            if text.startswith(("INSERT", "UPDATE", "DELETE")):
                words = sql.split()
                target = words[2] if words[0].upper() in ("INSERT", "DELETE") else words[1]
                tables.add(target.strip('"'))
            elif text.startswith(("COMMIT", "END")):
                if tables:
                    counts["+".join(sorted(tables))] += 1
                tables.clear()
            elif text.startswith("ROLLBACK"):
                tables.clear()

        if hasattr(dbapi_connection, "set_trace_callback"):
            dbapi_connection.set_trace_callback(statement)

    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--n", type=int, default=1000, help="rings samples")
    args = parser.parse_args(argv)
    counts = count_write_transactions()
    from regsweep import SearchSpace, run_sweep
    from regsweep.data import make_rings

    space = SearchSpace(depth=(1, 4), width=(4, 128), patience=(2, 10), max_epochs=args.max_epochs, batch_size=50)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        study = run_sweep(space, make_rings(n=args.n, seed=0), study="bench", storage=f"sqlite:///{Path(tmp) / 'c.db'}",
                          trials=args.trials, workers=1, pruner="median", progress=False, out=str(Path(tmp) / "out"),
                          engine="slots", seed=0, slots=4)
        epochs = sum(t.user_attrs.get("epochs", 0) for t in study.trials)
    total = sum(counts.values())
    print(f"{args.trials} trials, {epochs} epochs, {time.perf_counter() - started:.1f} s: {total} write transactions, "
          f"{total / args.trials:.1f} per trial")
    for tables, n in counts.most_common():
        print(f"  {n:6d}  {tables}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
