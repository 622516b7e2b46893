"""arflow: invoice and accounts-receivable follow-up automation on Prefect."""

__version__ = "0.1.0"
