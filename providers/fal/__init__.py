"""fal.ai adapter for Ovi (``fal-ai/ovi/image-to-video`` and ``fal-ai/ovi``), over fal-client."""

from providers.fal.provider import FalProvider

__all__ = ["FalProvider"]
