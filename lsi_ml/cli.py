"""``lsi-ml`` command line (training and evaluation arrive with the lsi_ml issue)."""

from __future__ import annotations

import click

from lsi_ml import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsi-ml")
def main() -> None:
    """Train and evaluate latent-space single-pixel cameras (not implemented yet)."""


if __name__ == "__main__":  # pragma: no cover
    main()
