"""Text-to-image against a Triton server's ``txt2img`` model, sync and asyncio, returning PIL images.

    with Txt2ImgClient("localhost:8001") as client:
        image = client.generate("a lighthouse at dusk", seed=1, steps=20)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence, TypeVar

from PIL import Image

from ppo_client import contract
from ppo_client.contract import ServedPipeline, SizeLimits
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest, check_prompt_count
from ppo_client.triton import CONNECT_RETRY_S, DEFAULT_TIMEOUT_S, ClientBase, served_parameters, txt2img_inputs

_Client = TypeVar("_Client", bound="Txt2ImgClient")  # a subclass's `with` gives the subclass (ScoringClient)
_AsyncClient = TypeVar("_AsyncClient", bound="AsyncTxt2ImgClient")

MODEL = contract.TXT2IMG.name


def _as_request(request: GenerationRequest | str, fields: dict[str, Any]) -> GenerationRequest:
    if isinstance(request, GenerationRequest):
        return dataclasses.replace(request, **fields) if fields else request
    return GenerationRequest(prompt=request, **fields)


def _check_batch(requests: Sequence[GenerationRequest], pipeline: ServedPipeline) -> list[GenerationRequest]:
    rows = [r.sized(pipeline.limits).checked(pipeline.limits, pipeline.schedulers) for r in requests]
    check_prompt_count(len(rows))
    if len({(r.height, r.width) for r in rows}) > 1:
        raise InvalidRequestError("height", "all prompts of one batch must share height and width")
    return rows


def _pipeline_from_config(config: dict, url: str) -> ServedPipeline:
    return served_parameters(ServedPipeline.from_parameters, config, model=MODEL, url=url)


def _images(result) -> list[Image.Image]:
    return [Image.fromarray(array) for array in result.as_numpy(contract.TXT2IMG.IMAGE.name)]


class _Txt2ImgBase(ClientBase):
    def __init__(self, url: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_retry_s: float = CONNECT_RETRY_S) -> None:
        super().__init__(url, timeout_s=timeout_s, connect_retry_s=connect_retry_s)
        self._pipeline: ServedPipeline | None = None

    def _txt2img_kwargs(self, rows: Sequence[GenerationRequest]) -> dict:
        return self._infer_kwargs(contract.TXT2IMG, txt2img_inputs(self._module, rows))


class Txt2ImgClient(_Txt2ImgBase):
    def pipeline(self) -> ServedPipeline:
        """What the served pipeline offers (family, sizes, schedulers), read once from its config."""
        if self._pipeline is None:
            self._pipeline = _pipeline_from_config(self._model_config(MODEL), str(self.endpoint))
        return self._pipeline

    def size_limits(self) -> SizeLimits:
        """Height/width the served pipeline accepts."""
        return self.pipeline().limits

    def generate(self, request: GenerationRequest | str, **fields: Any) -> Image.Image:
        """One image; ``fields`` override the request's (or, with a prompt string, build one)."""
        return self.generate_batch([_as_request(request, fields)])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        """Several images in one server request (they must share height and width)."""
        rows = _check_batch(requests, self.pipeline())
        return _images(self._infer(**self._txt2img_kwargs(rows)))

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncTxt2ImgClient(_Txt2ImgBase):
    """The asyncio twin of ``Txt2ImgClient``: ``await asyncio.gather(*(c.generate(p) for p in ps))``."""

    _aio = True

    async def pipeline(self) -> ServedPipeline:
        if self._pipeline is None:
            self._pipeline = _pipeline_from_config(await self._model_config(MODEL), str(self.endpoint))
        return self._pipeline

    async def size_limits(self) -> SizeLimits:
        return (await self.pipeline()).limits

    async def generate(self, request: GenerationRequest | str, **fields: Any) -> Image.Image:
        return (await self.generate_batch([_as_request(request, fields)]))[0]

    async def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        rows = _check_batch(requests, await self.pipeline())
        return _images(await self._infer(**self._txt2img_kwargs(rows)))

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def __aenter__(self: _AsyncClient) -> _AsyncClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()
