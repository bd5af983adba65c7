"""Prompts the model takes only in part, over real sockets with the toy model: the daemon shows
what the rest says and names the words it set aside in the acks' `warning`; plugins' strict
`check_prompt` still refuses them; a prompt with nothing left to show is still BAD_PROMPT."""

from __future__ import annotations

import pytest

from plugins import hookimpl
from plugins.host import PluginHost
from protocol.client import Controller, RemoteError, Viewer
from runtime.daemon import cli
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import PromptError, load_pipeline

TCP = "tcp://127.0.0.1:*"
PARTLY_READ = "a blue cube glides past an enchanted orchard under the starry night sky"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toy", max_streams=2)


class StrictCheck:
    """Records what `SessionInfo.check_prompt` says about two texts when a session opens."""

    def __init__(self) -> None:
        self.verdicts: dict[str, str | None] = {}

    @hookimpl
    def longlive_session_opened(self, session, prompt):
        for text in ("a blue cube at night", PARTLY_READ):
            try:
                session.check_prompt(text)
                self.verdicts[text] = None
            except PromptError as exc:
                self.verdicts[text] = str(exc)


def test_unknown_words_are_shown_past_and_named_in_the_acks(pipe):
    check = StrictCheck()
    host = PluginHost(builtin_models=False)
    host.register(check, "strict-check")
    config = DaemonConfig(control=TCP, stream=TCP, default_session=None)
    with serve_in_thread(pipe, config, host) as daemon, Viewer(daemon.endpoints[1], acks=False, status=False) as view, \
            Controller(daemon.endpoints[0]) as ctl:
        opened = ctl.open("main", prompt="a red ball in a haunted meadow").result()
        next(view.frames(timeout=20))
        clean = ctl.send_prompt("a red ball at night")
        partly = ctl.send_prompt(PARTLY_READ, at_frame=opened.frame + 3 * pipe.frames_per_block)
        clean_ack, partly_ack = clean.result(timeout=20), partly.result(timeout=20)
        [status] = ctl.status("main")
        with pytest.raises(RemoteError, match="BAD_PROMPT.*'unicorn'"):  # nothing left to show
            ctl.send_prompt("the unicorn").result(timeout=20)
        [after] = ctl.status("main")

    assert opened.status == "applied" and "'haunted'" in opened.warning
    assert clean_ack.status == "applied" and clean_ack.warning is None
    assert partly_ack.status == "applied" and partly_ack.frame is not None
    for ack in (partly.accepted, partly_ack):  # named when queued, and again when it took effect
        assert "'enchanted'" in ack.warning and "'orchard'" in ack.warning and "'starry'" not in ack.warning
    assert status.prompt == PARTLY_READ and status.prompt_id == partly_ack.event_id  # the user's text is kept
    assert after.prompt_id == partly_ack.event_id and after.frame > status.frame  # the refusal left the stream as it was
    assert check.verdicts["a blue cube at night"] is None
    assert "'enchanted'" in check.verdicts[PARTLY_READ]


def test_send_prints_the_words_it_set_aside(pipe, capsys):
    config = DaemonConfig(control=TCP, stream=TCP)
    with serve_in_thread(pipe, config) as daemon:
        control, stream = daemon.endpoints
        assert cli.main(["send", PARTLY_READ, "--control", control, "--stream", stream, "--timeout", "30"]) == 0
        said = capsys.readouterr()
        assert cli.main(["send", "a red ball at night", "--control", control, "--stream", stream]) == 0
        clean = capsys.readouterr()
    assert "takes effect at frame" in said.out
    assert said.err.startswith("warning: unknown words in prompt:") and "'orchard'" in said.err
    assert "takes effect at frame" in clean.out and clean.err == ""
