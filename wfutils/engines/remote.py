"""A remote OpenAI-compatible endpoint (GPT-4o, a server someone else started): nothing to start or stop.

The endpoint's URL is checked and made public (no credentials) by the caller, :func:`wfutils.llm.client.check_base_url`
and :func:`~wfutils.llm.client.public_url`; the key stays in ``$OPENAI_API_KEY``, read by the client.
The model's size is not published by such an endpoint: ``n_params`` is None unless the caller states it.
"""

from __future__ import annotations

from typing import Any

from wfutils.engines.base import Endpoint, EngineInfo, ServerEngine, register

__all__ = ["RemoteEngine"]


@register
class RemoteEngine(ServerEngine):
    """One model at an OpenAI-compatible endpoint that wfbook does not run."""

    name = "openai-compatible"
    starts_locally = False

    def __init__(self, model: str, *, base_url: str, public_url: str, local: bool | None = None,
                 n_params: int | None = None, **_: Any) -> None:
        if not model:
            raise ValueError("a remote endpoint needs a model id (models=[...])")
        self.model, self.base_url, self.public_url, self.local, self.n_params = model, base_url, public_url, local, n_params

    def info(self) -> EngineInfo:
        return EngineInfo(name=self.name, local=self.local, endpoint=self.public_url)

    def __enter__(self) -> "RemoteEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def endpoint(self) -> Endpoint:
        return Endpoint(base_url=self.base_url, model=self.model, name=self.model, info=self.info(),
                        n_params=self.n_params, facts={"engine": self.info().label, "n_params": self.n_params})
