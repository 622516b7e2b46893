"""OAuth2 refresh tokens that rotate (QuickBooks, Xero): each refresh returns a new refresh token
and the old one stops working, so the new one is saved back at once, to the Prefect block the
credentials came from, or else to data/credentials/<system>.json (mode 600), tied to the token in
the environment it descends from (a new token given there wins over an old saved rotation)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


class RotatingRefreshToken:
    """Mixin: the class sets TOKEN_FILE and BLOCK_VARIABLE/BLOCK_DEFAULT and has `settings`
    (with "refresh_token"), `block` (a Prefect block or None) and `data_dir`."""

    TOKEN_FILE: str
    BLOCK_VARIABLE: str
    BLOCK_DEFAULT: str

    def _token_file(self) -> Path:
        return self.data_dir / "credentials" / self.TOKEN_FILE

    def _refresh_token(self) -> str:
        """The newest refresh token: the block's, else the one saved after the last rotation (when
        it descends from the token in the environment), else the environment's."""
        given = self.settings["refresh_token"]
        if self.block is not None:
            return given
        path = self._token_file()
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("seed") == hashlib.sha256(given.encode()).hexdigest():
                return saved["refresh_token"]
        return given

    def _store_refresh_token(self, token: str | None, previous: str) -> None:
        if not token or token == previous:
            return
        if self.block is not None:
            from pydantic import SecretStr

            self.block.refresh_token = SecretStr(token)
            self.block.save(os.environ.get(self.BLOCK_VARIABLE, self.BLOCK_DEFAULT), overwrite=True)
            return
        path = self._token_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = hashlib.sha256(self.settings["refresh_token"].encode()).hexdigest()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seed": seed, "refresh_token": token}))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
