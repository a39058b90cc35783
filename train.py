"""Train, compress and measure: ``python train.py [+method=<name>] [+experiment=<name>] [key=value ...]``.

The same app as ``python -m lightning_compress.train`` (and the console script ``lightning-compress-train``)."""

from lightning_compress.train import main

if __name__ == "__main__":
    main()
