import sys

from pipeline.numerics import pin

pin()   # before torch or numpy load: the same kernels and threads on any x86-64 machine (pipeline.numerics)

from pipeline.cli import main  # noqa: E402

if __name__ == "__main__":   # worker processes (forkserver) import this module without running it
    sys.exit(main())
