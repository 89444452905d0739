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

# Spellings that look like a tag but are not one: Ovi's tokenizer sees them as literal text, so the
# vendor would speak or render "<s>" instead of starting a speech segment. Lower case, spaces, a
# slash, underscores or hyphens around S, E, AUDCAP, ENDAUDCAP (and AUDIOCAP/AUDCAPTION variants).
_LOOKALIKE = re.compile(
    r"<\s*/?\s*(?:s|e|end[\s_-]*(?:aud(?:io)?[\s_-]*cap(?:tion)?|s|e)|aud(?:io)?[\s_-]*cap(?:tion)?)\s*/?\s*>",
    re.IGNORECASE)
_TAGS = frozenset({SPEECH_OPEN, SPEECH_CLOSE, AUDIO_OPEN, AUDIO_CLOSE})


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
        _check_unicode(text)
        _check_lookalikes(text)
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


def _check_unicode(text: str) -> None:
    """Lone surrogates cannot be encoded as UTF-8, so no vendor could receive the prompt."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(f"a lone surrogate U+{ord(text[exc.start]):04X} (not valid Unicode text)",
                          position=exc.start, fix="remove it, or decode the input as UTF-8 before building the "
                                                  "prompt") from None


def _check_lookalikes(text: str) -> None:
    """Refuse a near-miss tag (``<s>``, ``</S>``, ``<END_AUDCAP>``) with the tag it probably meant."""
    for match in _LOOKALIKE.finditer(text):
        token = match.group()
        if token in _TAGS:
            continue
        word = re.sub(r"[\s/_<>-]", "", token).upper()
        closing = "/" in token
        if word == "S":
            meant = SPEECH_CLOSE if closing else SPEECH_OPEN
        elif word in ("E", "ENDS", "ENDE"):
            meant = SPEECH_CLOSE
        elif word.startswith("END"):
            meant = AUDIO_CLOSE
        else:
            meant = AUDIO_CLOSE if closing else AUDIO_OPEN
        raise PromptError(f"{token!r} is not an Ovi tag and would reach the vendor as literal text",
                          position=match.start(),
                          fix=f"did you mean `{meant}`? Tags are exactly <S>…<E> and <AUDCAP>…<ENDAUDCAP>")
