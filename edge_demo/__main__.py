"""Entry point of ``python -m edge_demo`` (see ``edge_demo.app``)."""

from edge_demo.app import main

if __name__ == "__main__":  # Importing the module (e.g. the device-boundary test) runs nothing.
    raise SystemExit(main())
