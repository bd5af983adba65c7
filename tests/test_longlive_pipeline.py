"""`load_pipeline("longlive-1.3b", weights=DIR)` end to end, on tiny checkpoints in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.pipeline import PromptError, load_pipeline
from runtime.wan.vae import pixel_frames
from tests.test_wan_loading import write_weights


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_weights(root)
    return load_pipeline("longlive-1.3b", weights=str(root), dtype=torch.float32, max_streams=2,
                         preset="tiny", latent_size=(8, 8))


def test_stream_decodes_block_by_block_like_the_official_layout(pipe):
    stream = pipe.open_stream(pipe.encode_prompt("a cat"), seed=0)
    first, second = pipe.step([stream])[0], pipe.step([stream])[0]
    assert first.shape == (pixel_frames(3), 64, 64, 3) and first.dtype == np.uint8  # 9 frames
    assert second.shape == (pixel_frames(3, first_call=False), 64, 64, 3)  # then 12 per block
    assert stream.frame_index == 21
    stream.switch_prompt(pipe.encode_prompt("the dog"))
    assert pipe.step([stream])[0].shape[0] == 12
    pipe.close_stream(stream)


def test_streams_batch_and_keep_their_own_decoders(pipe):
    a = pipe.open_stream(pipe.encode_prompt("rain"), seed=1)
    pipe.step([a])
    b = pipe.open_stream(pipe.encode_prompt("sun"), seed=2)
    fa, fb = pipe.step([a, b])
    assert (len(fa), len(fb)) == (12, 9)
    pipe.close_stream(a)
    pipe.close_stream(b)


def test_overlong_prompt_is_refused(pipe):
    with pytest.raises(PromptError, match="too long"):
        pipe.encode_prompt("word " * 5000)


def test_random_weights_build_the_same_pipeline_for_benchmarks():
    pipe = load_pipeline("longlive-1.3b", random_weights=True, dtype=torch.float32, max_streams=1,
                         preset="tiny", latent_size=(8, 8))
    stream = pipe.open_stream(pipe.encode_prompt("any words at all"), seed=0)
    assert pipe.step([stream])[0].shape == (9, 64, 64, 3)
    with pytest.raises(ValueError, match="either --weights DIR or --random-weights"):
        load_pipeline("longlive-1.3b", random_weights=True, weights="/some/dir", preset="tiny")
