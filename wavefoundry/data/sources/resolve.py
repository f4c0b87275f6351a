"""Which metadata describes an audio file: its sidecar, a Freesound sound object or an FMA tracks.csv row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wavefoundry.data.sources.fma import fma_record, fma_track_id, read_fma_genres, read_fma_tracks
from wavefoundry.data.sources.freesound import freesound_id, freesound_record, load_freesound_index
from wavefoundry.data.sources.records import MissingMetadataError, SourceRecord
from wavefoundry.data.sources.sidecar import read_sidecar, sidecar_path

METADATA_MODES = ("auto", "sidecar", "freesound", "fma")


class MetadataResolver:
    """Finds the metadata of audio files under one of :data:`METADATA_MODES`.

    "sidecar": ``foo.json`` next to ``foo.wav`` (our keys or a Freesound object). "freesound": a Freesound
    object from the sidecar, else from ``freesound_json`` by the id in the file name. "fma": the
    ``fma_tracks`` row of the track id in the file name. "auto": sidecar, else Freesound id, else FMA id, with
    whichever sources are given. The index files are read once here; :meth:`resolve` only reads sidecars, so
    threads may share a resolver.

    Raises:
        ValueError: unknown mode, or "fma" without ``fma_tracks``. MetadataError: an index file is unreadable.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        freesound_json: str | Path | None = None,
        fma_tracks: str | Path | None = None,
    ) -> None:
        if mode not in METADATA_MODES:
            raise ValueError(f"unknown metadata mode {mode!r}; valid: {', '.join(METADATA_MODES)}")
        if mode == "fma" and fma_tracks is None:
            raise ValueError("metadata='fma' needs fma_tracks (the path of FMA's tracks.csv)")
        self.mode = mode
        self.freesound_json = Path(freesound_json) if freesound_json else None
        self.freesound: dict[str, dict[str, Any]] | None = None
        if self.freesound_json and mode in ("auto", "freesound"):
            self.freesound = load_freesound_index(self.freesound_json)
        self.fma: dict[str, dict[str, str]] | None = None
        self.genres: dict[int, str] = {}
        if fma_tracks and mode in ("auto", "fma"):
            self.fma = read_fma_tracks(fma_tracks)
            genres_csv = Path(fma_tracks).with_name("genres.csv")
            self.genres = read_fma_genres(genres_csv) if genres_csv.is_file() else {}

    def resolve(self, path: str | Path) -> SourceRecord:
        """The metadata of the audio file ``path``.

        Raises:
            MissingMetadataError: no source describes the file.
            InvalidMetadataError: the source that describes it is broken.
        """
        path = Path(path)
        tried = []
        if self.mode in ("auto", "sidecar", "freesound"):
            if sidecar_path(path) is not None:
                return read_sidecar(path, freesound_only=self.mode == "freesound")
            tried.append(f"no sidecar {path.stem}.json")
        if self.freesound is not None:
            sound_id = freesound_id(path)
            if sound_id in self.freesound:
                where = f"{self.freesound_json} (id {sound_id})"
                return freesound_record(self.freesound[sound_id], where=where)
            tried.append(f"id {sound_id} not in {self.freesound_json}" if sound_id else "no Freesound id in name")
        if self.fma is not None:
            track_id = fma_track_id(path)
            if track_id in self.fma:
                return fma_record(track_id, self.fma[track_id], self.genres)
            tried.append(f"track {track_id} not in tracks.csv" if track_id else "no FMA track id in name")
        raise MissingMetadataError(f"{path}: no metadata ({'; '.join(tried)})")
