"""A story played live against a real daemon (loopback sockets, toy model) lands every prompt
on the frame an offline render of the same story, seed and logged answers gives; the frames
there show the prompted scene (probe); game events mid-wait are delivered once."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import zmq

from protocol.codec import encode
from protocol.messages import GameEvent
from runtime.daemon.daemon import DaemonConfig
from runtime.daemon.inprocess import serve_in_thread
from runtime.pipeline import load_pipeline
from scripting.answers import Input
from scripting.errors import ScriptError
from scripting.live import LiveConfig, play
from scripting.plan import plan_story
from scripting.render import play_plan
from scripting.runner import load_story
from toylab.probe import probe_frame

DAY = "a red ball rests on the green grass under a sunny sky"
NIGHT = "a red ball rests on the green grass under a starry night sky"
SNOW = "a red ball rests on the snowy field under a sunny sky"
STORM = "a red ball bounces on the sandy beach under a stormy sky"
SUNSET = "a red ball rests on the sandy beach under an orange sunset"

STORY = f'''
async def story(s):
    await s.show("{DAY}", seconds=1)
    pick = await s.choose("Where?", ["night", "snow"], timeout=3, default=1)
    await s.show(["{NIGHT}", "{SNOW}"][pick], seconds=1)
    jump = await s.event("jump", timeout=3)
    await s.show("{STORM}" if jump else "{SUNSET}", seconds=1)
    again = await s.event("jump", timeout=0.5)   # resends of the first jump must not answer this
    await s.show("{SUNSET}" if again is None else "{DAY}", seconds=1)
'''
EXPECTED = {DAY: ("day", "grass"), NIGHT: ("night", "grass"), SNOW: ("day", "snow"),
            STORM: ("storm", "sand"), SUNSET: ("sunset", "sand")}


class Lines(io.StringIO):
    """The runner's output; calls `on_line` with each line as it is written."""

    def __init__(self, on_line) -> None:
        super().__init__()
        self.on_line = on_line

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.on_line(line)
        return super().write(text)


class Game:
    """A game sending to the daemon's control socket: answers the choice and sends one jump,
    each resent with the same id for a while (as a client does until it knows the event
    arrived); the daemon relays each id once to the story."""

    def __init__(self, endpoint: str, session: str) -> None:
        self.pub = zmq.Context.instance().socket(zmq.DEALER)  # its answers are not read
        self.pub.linger = 0
        self.pub.connect(endpoint)
        self.session = session
        self.to_send: list[GameEvent] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_line(self, line: str) -> None:
        if line.startswith("story: Where?"):
            self.to_send.append(GameEvent(id="game-choice", client="game", session=self.session, name="choice",
                                          payload={"index": 0}))
        elif line.startswith("story: waiting for jump") and not any(m.name == "jump" for m in self.to_send):
            self.to_send.append(GameEvent(id="game-jump", client="game", session=self.session, name="jump",
                                          payload={"height": 3}))

    def _run(self) -> None:
        while not self.stop.is_set():
            for msg in list(self.to_send):
                self.pub.send_multipart(encode(msg))
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.pub.close()


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline("toy", max_streams=2)


def test_live_play_matches_offline_render_to_the_frame(tmp_path, pipe):
    path = tmp_path / "story.py"
    path.write_text(STORY)
    story = load_story(path)
    pictures: dict[int, np.ndarray] = {}
    config = DaemonConfig(control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", default_session=None)
    with serve_in_thread(pipe, config) as daemon:
        control, stream = daemon.endpoints
        game = Game(control, "tale")
        try:
            result = play(story, LiveConfig(control=control, stream=stream, session="tale", seed=5, terminal=False),
                          on_picture=lambda p: pictures.setdefault(p.frame.frame, p.image.copy()),
                          out=Lines(game.on_line))
        finally:
            game.close()
    assert result.late == [] and result.warnings == []
    # the game answered the choice and jumped once; the second wait timed out despite the resends
    kinds = [(a.index, a.name, a.timed_out) for a in result.answers]
    assert kinds == [(0, None, False), (None, "jump", False), (None, None, True)]
    assert result.answers[1].payload == {"height": 3}
    live = [(frame, cue.text) for frame, cue in result.timeline]
    assert [text for _, text in live] == [DAY, NIGHT, STORM, SUNSET]

    # offline, with the logged answers and the same seed: the same timeline, to the frame
    inputs = [Input(index=a.index, event=a.name, payload=a.payload, timeout=a.timed_out, frame=a.frame)
              for a in result.answers]
    plan = plan_story(story, pipe.fps, inputs)
    blocks: list[np.ndarray] = []
    offline = play_plan(pipe, plan, 5, lambda first, frames: blocks.append(np.array(frames)))
    assert [(e.frame, e.text) for e in offline] == live
    assert plan.end == result.end

    # the frames the daemon streamed show the prompted scene a block after each switch
    video = np.concatenate(blocks)
    for start, text in live:
        probe = probe_frame(pictures[start + 6])
        assert (probe.sky, probe.ground) == EXPECTED[text], (start, text)
    # negative control: the probe tells the scenes apart (the opening is not night)
    assert probe_frame(pictures[6]).sky != EXPECTED[NIGHT][0]
    same = [i for i in range(len(video)) if i in pictures and np.array_equal(pictures[i], video[i])]
    assert len(same) == len(video), f"live frames differ from offline at {sorted(set(range(len(video))) - set(same))[:5]}"


def play_second_prompt(tmp_path, pipe, text: str, session: str):
    """Play a story that shows DAY and then `text` (line 3) against a fresh toy daemon."""
    path = tmp_path / "story.py"
    path.write_text(f'async def story(s):\n    await s.show("{DAY}", seconds=0.5)\n'
                    f'    await s.show("{text}", seconds=0.5)\n')
    config = DaemonConfig(control="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", default_session=None)
    with serve_in_thread(pipe, config) as daemon:
        control, stream = daemon.endpoints
        return path, play(load_story(path), LiveConfig(control=control, stream=stream, session=session,
                                                        terminal=False), out=io.StringIO())


def test_a_prompt_the_daemon_refuses_stops_the_story_at_its_line(tmp_path, pipe):
    with pytest.raises(ScriptError, match="BAD_PROMPT") as caught:
        play_second_prompt(tmp_path, pipe, "the dragon", "bad")
    assert caught.value.line == 3


def test_a_prompt_read_in_part_plays_and_is_reported_at_its_line(tmp_path, pipe):
    path, result = play_second_prompt(tmp_path, pipe, "a red ball in the enchanted forest at night", "partly")
    assert len(result.timeline) == 2  # shown, not refused
    [warning] = result.warnings
    assert warning.startswith(f"{path}:3: ") and "'enchanted'" in warning and "'forest'" in warning
