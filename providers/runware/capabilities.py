"""What Runware's Ovi (``runware:190@1``) honors: the adapter's name and capabilities, as plain data.

Apart from ``translate`` (which re-exports them) so that the registry, which reads every adapter class's
capabilities whenever a gateway starts or a quote runs, loads no wire schema and no translation code
(start-up, issue 14). Sources as in ``translate``: seeds/runware-ovi-model-docs.md and
seeds/runware-ovi-openapi.json.
"""

from __future__ import annotations

from gateway.contract import Capabilities, Limit, ModeCapabilities
from gateway.request import Mode

__all__ = ["CAPABILITIES", "ENDPOINT", "PROVIDER"]

PROVIDER = "runware"
ENDPOINT = "runware:190@1"

CAPABILITIES = Capabilities(modes={
    # Ovi on Runware requires inputs.image: image-to-video only.
    Mode.IMAGE_TO_VIDEO: ModeCapabilities(endpoint=ENDPOINT, fields={
        "seed": Limit(minimum=0, maximum=2**63 - 1),
        "steps": Limit(minimum=1, maximum=100),
        "negative_prompt": Limit(),
        "audio_negative_prompt": Limit(),
        "video_guidance": Limit(minimum=0, maximum=10),
        "audio_guidance": Limit(minimum=0, maximum=10),
        "slg_layer": Limit(minimum=0, maximum=30),
        "fps": Limit(minimum=1, maximum=120),
        "output_format": Limit(choices=("MP4", "WEBM", "MOV")),
        "output_quality": Limit(minimum=20, maximum=99),
    }),
})
