"""Real-data sources: metadata readers (sidecar JSON, Freesound API, FMA) and the licence-aware scanner."""

from wavefoundry.data.sources.fma import fma_record, fma_track_id, read_fma_genres, read_fma_tracks
from wavefoundry.data.sources.freesound import freesound_id, freesound_record, load_freesound_index
from wavefoundry.data.sources.probe import AudioFacts, TruncatedAudioError, probe_audio
from wavefoundry.data.sources.records import (
    InvalidMetadataError,
    MetadataError,
    MissingMetadataError,
    SourceRecord,
)
from wavefoundry.data.sources.resolve import METADATA_MODES, MetadataResolver
from wavefoundry.data.sources.scan import Reject, ScanReport, assign_ids, find_audio, scan_folder
from wavefoundry.data.sources.sidecar import read_sidecar, sidecar_path

__all__ = [
    "METADATA_MODES",
    "AudioFacts",
    "InvalidMetadataError",
    "MetadataError",
    "MetadataResolver",
    "MissingMetadataError",
    "Reject",
    "ScanReport",
    "SourceRecord",
    "TruncatedAudioError",
    "assign_ids",
    "find_audio",
    "fma_record",
    "fma_track_id",
    "freesound_id",
    "freesound_record",
    "load_freesound_index",
    "probe_audio",
    "read_fma_genres",
    "read_fma_tracks",
    "read_sidecar",
    "scan_folder",
    "sidecar_path",
]
