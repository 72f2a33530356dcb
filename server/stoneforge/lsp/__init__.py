"""The pygls language server: thin handlers over :mod:`stoneforge.service`."""
