"""The SDK carries its own copy of the server's audio suffix list (it must not import the server);
this keeps the copy equal, so a file the server treats as audio is sent as audio by the SDK."""

from omnivec.server import media
from omnivec_client import media as sdk_media


def test_sdk_audio_suffixes_equal_the_servers():
    assert tuple(sdk_media.AUDIO_SUFFIXES) == media.AUDIO_SUFFIXES


def test_sdk_and_server_name_the_same_modality_for_every_known_suffix():
    for suffix in media.MEDIA_SUFFIXES:
        assert sdk_media.modality_of(f"file{suffix.upper()}") == media.suffix_modality(f"file{suffix}")
