"""``python -m gateway`` runs the ``ovi-gateway`` command line."""

from gateway.cli import main

if __name__ == "__main__":
    main()
