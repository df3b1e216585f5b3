"""microprop: learning local material properties from SEM micrographs.

The library behind the Snakemake workflow: pure functions on arrays and
tables (see ``docs/ARCHITECTURE.md``).
"""

__version__ = "0.1.0"
