"""WaveSpeed: Ovi image-to-video and text-to-video at $0.15 per 5 s clip."""

from providers.wavespeed.provider import WaveSpeedProvider

__all__ = ["WaveSpeedProvider"]
