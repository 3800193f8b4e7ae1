"""``python -m lit_airlora fit --config configs/X.yaml``."""

from lit_airlora.cli import main

if __name__ == "__main__":
    main()
