"""Worker process entry: ``python -m benchmarks._worker`` (started by ``benchmarks.runner``)."""

from benchmarks.runner import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
