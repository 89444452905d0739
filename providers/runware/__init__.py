"""Runware adapter for Ovi (``runware:190@1``): image-to-video, polled by our own ``taskUUID``."""

from providers.runware.provider import RunwareProvider

__all__ = ["RunwareProvider"]
