"""The ledger: the models, the store and the migrations (the only code that talks to the database)."""


def namespace(mode: str) -> str:
    """The outbox keeps dry-run rows apart from live ones: a dry run never blocks a real send, and
    a draft run and a send run share one set of keys, so nothing goes out twice between them."""
    return "dry-run" if mode == "dry-run" else "live"
