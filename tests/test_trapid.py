"""One trap id range (0..255, the radio frame's byte), one check, the same message everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from service_helpers import TINY_BUNDLE

from device.codec.container import Container, ContainerError, Part, pack
from device.codec.encoder import Encoder
from device.errors import ConfigError
from device.link.frames import DataFrame, FrameError
from device.link.frames import pack as pack_frame
from device.trapid import MAX_TRAP_ID, check_trap_id


def test_the_range_is_the_radio_frames_byte():
    assert MAX_TRAP_ID == 255
    assert check_trap_id(0) == 0 and check_trap_id(np.int64(255)) == 255
    for bad in (-1, 256, 65535, True, 3.0, "7", None):
        with pytest.raises(ConfigError, match=r"^trap id must be an integer 0\.\.255"):
            check_trap_id(bad)


def test_encoder_container_and_frames_refuse_what_the_radio_cannot_carry():
    with pytest.raises(ConfigError, match="0..255"):  # before any work is done
        Encoder(TINY_BUNDLE, size=64).encode(np.zeros((64, 64, 3), np.uint8), trap_id=256)
    part = Part(0, (0, 0, 1, 1), 1, 1, b"", ())
    with pytest.raises(ContainerError, match="trap_id must be an integer 0..255"):
        pack(Container(model_id="00000000", width=1, height=1, parts=(part,), trap_id=256))
    with pytest.raises(FrameError, match="0..255"):
        pack_frame(DataFrame(256, 0, 0, 1, b""))


def test_the_sender_refuses_a_trap_id_its_frames_cannot_carry():
    from device.errors import LinkError
    from device.link.sender import Sender

    with pytest.raises(LinkError, match="trap id must be an integer 0..255"):
        Sender(None, None, 256, None)
