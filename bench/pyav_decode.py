"""PyAV's ways of taking sampled frames from a video, timed like DecodeClip.

  python3 bench/pyav_decode.py --video FILE --indices 9,28,... [--runs 3]

Two strategies, each producing the same clip DecodeClip does (frame i = the
i-th frame in presentation order; short side resized to 256 with bilinear
filtering, centre 224x224 crop, RGB):

  pick  decode sequentially (one thread) up to the last sampled index and keep
        the sampled frames: the straightforward PyAV loop.
  seek  what decord's get_batch and TorchCodec's exact mode do: one pass over
        the packets (no decoding) for the presentation timestamps, then for
        each sample seek to the keyframe before it (unless it is ahead of the
        decoder) and decode forward to it.

Prints one JSON line: the minimum of --runs wall times of each, in ms, the
frames each strategy decoded, and with --ours (a clip that clipserve-decode-
compare --dump wrote) how far DecodeClip's pixels are from PyAV's: both decode
with FFmpeg's H.264 decoder, which is bit-exact, so only the RGB conversion
(swscale versions and rounding) may differ. Run it pinned to one core
(taskset -c 0).
"""
import argparse
import json
import time

import av
import numpy as np

SHORT, CROP = 256, 224


def to_clip_frame(frame):
    # video::ComputeResizeCrop's rule: the long side floored, the crop offset
    # halved with ties to even (Python's round()).
    w, h = frame.width, frame.height
    if w >= h:
        rw, rh = SHORT * w // h, SHORT
    else:
        rw, rh = SHORT, SHORT * h // w
    rgb = frame.to_ndarray(width=rw, height=rh, format="rgb24",
                           interpolation="BILINEAR")
    top, left = round((rh - CROP) / 2), round((rw - CROP) / 2)
    return rgb[top:top + CROP, left:left + CROP]


def video_stream(container):
    """The first video stream, decoded on the calling thread only."""
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.thread_count = 1
    return stream


def pick(path, indices):
    wanted = {i: k for k, i in enumerate(indices)}
    out = [None] * len(indices)
    decoded = 0
    with av.open(path) as container:
        stream = video_stream(container)
        for i, frame in enumerate(container.decode(stream)):
            decoded += 1
            if i in wanted:
                out[wanted[i]] = to_clip_frame(frame)
            if i >= indices[-1]:
                break
    return np.stack(out), decoded


def seek(path, indices):
    out = [None] * len(indices)
    decoded = 0
    with av.open(path) as container:
        stream = video_stream(container)
        # The index: presentation timestamps and keyframes, from the packets.
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream)
                   if p.size > 0 and p.pts is not None]
        pts = sorted(p for p, _ in packets)
        keys = sorted(p for p, key in packets if key)
        position = None  # pts of the last frame decoded
        frames = None
        for k, i in enumerate(indices):
            target = pts[i]
            key = max((p for p in keys if p <= target), default=keys[0])
            if position is None or not (key <= position < target):
                container.seek(key, stream=stream, backward=True)
                frames = container.decode(stream)
            for frame in frames:
                decoded += 1
                position = frame.pts
                if frame.pts == target:
                    out[k] = to_clip_frame(frame)
                    break
    return np.stack(out), decoded


def best_ms(fn, runs):
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--indices", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ours", help="raw RGB clip from DecodeClip")
    args = parser.parse_args()
    indices = [int(i) for i in args.indices.split(",")]
    pick_ms, (pick_clip, pick_decoded) = best_ms(lambda: pick(args.video, indices), args.runs)
    seek_ms, (seek_clip, seek_decoded) = best_ms(lambda: seek(args.video, indices), args.runs)
    result = {
        "pick_ms": round(pick_ms, 1), "pick_decoded": pick_decoded,
        "seek_ms": round(seek_ms, 1), "seek_decoded": seek_decoded,
        # Both strategies must return the same frames, or the timing is moot.
        "seek_equals_pick": bool(np.array_equal(pick_clip, seek_clip)),
    }
    if args.ours:
        ours = np.fromfile(args.ours, dtype=np.uint8).reshape(pick_clip.shape)
        diff = np.abs(ours.astype(np.int16) - pick_clip.astype(np.int16))
        result["ours_vs_pyav_mean_abs"] = round(float(diff.mean()), 3)
        result["ours_vs_pyav_max_abs"] = int(diff.max())
        # Per frame: the sampled frames must be the same pictures (a wrong
        # frame differs by tens of levels on this moving test source).
        result["ours_vs_pyav_worst_frame_mean_abs"] = round(
            float(diff.reshape(len(indices), -1).mean(axis=1).max()), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
