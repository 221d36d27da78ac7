"""Media payloads as Telegram shapes them: fresh file ids, a photo's sizes, each kind's own fields. Users' media
(stickers, voice notes, photos, ...) and the bot's uploads (``sendPhoto``, ``sendDocument``) get them."""

from __future__ import annotations

import itertools
import mimetypes
from typing import Any

Json = dict[str, Any]

#: What each kind of media carries besides its file ids (a photo is a list of sizes, a document names its file).
MEDIA_FIELDS: dict[str, Json] = {
    "sticker": {
        "width": 512, "height": 512, "is_animated": False, "is_video": False, "type": "regular",
        "emoji": "🙂", "set_name": "MoodStickers",
    },
    "voice": {"mime_type": "audio/ogg", "duration": 3},
    "audio": {
        "file_name": "audio.mp3", "mime_type": "audio/mpeg", "duration": 180, "performer": "Some Artist",
        "title": "Some Song",
    },
    "video": {"file_name": "video.mp4", "mime_type": "video/mp4", "duration": 5, "width": 640, "height": 360},
    "animation": {"file_name": "animation.mp4", "mime_type": "video/mp4", "duration": 2, "width": 320, "height": 240},
    "video_note": {"duration": 4, "length": 240},
}
# The size of a user's file when the test gives no content.
_DEFAULT_SIZE = 1024


class MediaFactory:
    """Makes media payloads, numbering their files so that every file id is new."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def media(self, kind: str, **fields: Any) -> Json:
        """A user's sticker, voice note, audio, video, animation or video note; ``fields`` override the defaults."""
        return {**self._file(kind, _DEFAULT_SIZE), **MEDIA_FIELDS[kind], **fields}

    def document(self, content: bytes | None, file_name: str, mime_type: str | None = None) -> Json:
        """A file; its mime type follows ``file_name`` unless given."""
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        size = _DEFAULT_SIZE if content is None else len(content)
        return {**self._file("document", size), "file_name": file_name, "mime_type": mime_type}

    def photo(self, content: bytes | None, width: int = 1280, height: int = 960) -> list[Json]:
        """Telegram's PhotoSize list: thumbnails 90 and 320 px on the long side, then the photo (at most 800 px)."""
        full = self._file("photo", _DEFAULT_SIZE if content is None else len(content))
        sizes = []
        for scale in (90, 320, 800):
            factor = min(1.0, scale / max(width, height))
            sizes.append({"width": max(1, round(width * factor)), "height": max(1, round(height * factor))})
        thumbnails = [{**self._file("photo", max(1, full["file_size"] // 4)), **size} for size in sizes[:-1]]
        return [*thumbnails, {**full, **sizes[-1]}]

    def _file(self, kind: str, size: int) -> Json:
        number = next(self._numbers)
        return {
            "file_id": f"Fake{kind.title().replace('_', '')}FileId-{number:06d}",
            "file_unique_id": f"FakeUnique{number:06d}",
            "file_size": size,
        }
