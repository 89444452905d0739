"""The Ovi prompt grammar: scene text, spoken lines in ``<S>…<E>``, one sound caption in ``<AUDCAP>…<ENDAUDCAP>``.

Pure functions only. ``OviPrompt.parse(text)`` validates and splits a prompt; ``OviPrompt.build(...)``
assembles one from parts; ``str(prompt)`` gives back exactly the text that was parsed.

Rules (from the Ovi model card and the vendors' examples): any number of speech segments, at most one
audio caption, tags balanced and never nested, no empty segment. Tags are case-sensitive, as Ovi's
tokenizer sees them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gateway.errors import InvalidRequest

__all__ = ["OviPrompt", "PromptError", "PromptPart"]

SPEECH_OPEN, SPEECH_CLOSE = "<S>", "<E>"
AUDIO_OPEN, AUDIO_CLOSE = "<AUDCAP>", "<ENDAUDCAP>"
_TAG = re.compile(r"<S>|<E>|<AUDCAP>|<ENDAUDCAP>")
_CLOSER = {SPEECH_OPEN: SPEECH_CLOSE, AUDIO_OPEN: AUDIO_CLOSE}
_KIND = {SPEECH_OPEN: "speech", AUDIO_OPEN: "audio"}

PartKind = Literal["text", "speech", "audio"]


class PromptError(InvalidRequest):
    """An Ovi prompt breaks the tag grammar. ``position`` is the 0-based character offset."""

    def __init__(self, problem: str, *, position: int, fix: str) -> None:
        self.position = position
        self.fix = fix
        super().__init__(f"prompt: {problem} at character {position}; {fix}")


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One run of the prompt: plain ``text``, a ``speech`` line, or the ``audio`` caption (inner text)."""

    kind: PartKind
    text: str

    def render(self) -> str:
        if self.kind == "speech":
            return f"{SPEECH_OPEN}{self.text}{SPEECH_CLOSE}"
        if self.kind == "audio":
            return f"{AUDIO_OPEN}{self.text}{AUDIO_CLOSE}"
        return self.text


@dataclass(frozen=True, slots=True)
class OviPrompt:
    """A validated Ovi prompt, kept as the exact sequence of its parts."""

    parts: tuple[PromptPart, ...]

    @classmethod
    def parse(cls, text: str) -> OviPrompt:
        """Split and validate ``text``. Raises ``PromptError`` naming the position and the fix."""
        if not isinstance(text, str):
            raise PromptError("the prompt must be a string", position=0, fix="pass text")
        if not text.strip():
            raise PromptError("the prompt is empty", position=0,
                              fix="describe the scene, e.g. 'A knight in the rain. <S>Hello.<E>'")
        parts: list[PromptPart] = []
        open_tag: str | None = None
        open_at = 0
        cursor = 0
        captions = 0
        for match in _TAG.finditer(text):
            tag, at = match.group(), match.start()
            if open_tag is None:
                if tag in (SPEECH_CLOSE, AUDIO_CLOSE):
                    opener = SPEECH_OPEN if tag == SPEECH_CLOSE else AUDIO_OPEN
                    raise PromptError(f"{tag} closes nothing", position=at,
                                      fix=f"open the segment with {opener} before it, or remove {tag}")
                if tag == AUDIO_OPEN and captions:
                    raise PromptError("a second <AUDCAP> audio caption", position=at,
                                      fix="merge all sound descriptions into one <AUDCAP>…<ENDAUDCAP>")
                if at > cursor:
                    parts.append(PromptPart("text", text[cursor:at]))
                open_tag, open_at, cursor = tag, at, match.end()
                continue
            expected = _CLOSER[open_tag]
            if tag != expected:
                raise PromptError(
                    f"{tag} inside the {open_tag} segment opened at character {open_at}", position=at,
                    fix=f"close it with {expected} first; tags cannot nest")
            inner = text[cursor:at]
            if not inner.strip():
                raise PromptError(f"empty {open_tag}{expected} segment", position=open_at,
                                  fix="put the words to speak or the sounds to describe between the tags, "
                                      "or remove them")
            kind: PartKind = "speech" if open_tag == SPEECH_OPEN else "audio"
            captions += kind == "audio"
            parts.append(PromptPart(kind, inner))
            open_tag, cursor = None, match.end()
        if open_tag is not None:
            raise PromptError(f"{open_tag} is never closed", position=open_at,
                              fix=f"end the {_KIND[open_tag]} segment with {_CLOSER[open_tag]}")
        if cursor < len(text):
            parts.append(PromptPart("text", text[cursor:]))
        return cls(tuple(parts))

    @classmethod
    def build(cls, scene: str, speech: list[str] | tuple[str, ...] = (),
              audio_caption: str | None = None) -> OviPrompt:
        """Assemble ``scene``, then each speech line, then the caption, separated by single spaces."""
        pieces = [scene.strip()] if scene.strip() else []
        pieces += [f"{SPEECH_OPEN}{line}{SPEECH_CLOSE}" for line in speech]
        if audio_caption is not None:
            pieces.append(f"{AUDIO_OPEN}{audio_caption}{AUDIO_CLOSE}")
        return cls.parse(" ".join(pieces))

    @property
    def scene(self) -> str:
        """The text outside every tag, with runs joined by one space."""
        return " ".join(p.text.strip() for p in self.parts if p.kind == "text" and p.text.strip())

    @property
    def speech(self) -> list[str]:
        """The spoken lines, in order."""
        return [p.text for p in self.parts if p.kind == "speech"]

    @property
    def audio_caption(self) -> str | None:
        """The sound caption's text, if there is one."""
        return next((p.text for p in self.parts if p.kind == "audio"), None)

    def __str__(self) -> str:
        return "".join(p.render() for p in self.parts)
