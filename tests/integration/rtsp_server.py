#!/usr/bin/python3
"""A minimal RTSP server for tests: serves one H.264 Annex B file as a live
stream over RTSP with RTP interleaved on the TCP connection (RFC 2326
section 10.12; RTP payload format for H.264, RFC 6184: single NAL unit
packets and FU-A fragments), paced at the given frame rate, to one client at
a time, looping the file.

  rtsp_server.py --port PORT --file clip.h264 [--fps 25] [--seconds S]

Answers OPTIONS, DESCRIBE (an SDP for one H.264 track), SETUP (TCP
interleaved only; UDP transport gets 461 Unsupported Transport), PLAY and
TEARDOWN. The access units are split on the stream's start codes: a new
unit begins at a parameter set, SEI or delimiter after a slice, or at a
slice after a slice (one slice a frame, as the test encodes them). With
--seconds the server stops sending after S seconds and closes the
connection (a camera that drops); it then waits for the next client.
Loopback only. Exit with SIGTERM.
"""
import argparse
import socket
import struct
import time

MTU = 1400


def nal_units(stream):
    """The NAL units of an Annex B stream, without start codes."""
    starts = []
    i = 0
    while True:
        i = stream.find(b"\x00\x00\x01", i)
        if i < 0:
            break
        starts.append(i + 3)
        i += 3
    units = []
    for n, s in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(stream)
        unit = stream[s:end]
        while unit.endswith(b"\x00"):  # the next 4-byte start code's zero
            unit = unit[:-1]
        units.append(unit)
    return units


def access_units(stream):
    aus, current, prev_slice = [], [], False
    for unit in nal_units(stream):
        kind = unit[0] & 0x1F
        is_slice = kind in (1, 5)
        if current and prev_slice:
            aus.append(current)
            current = []
        current.append(unit)
        prev_slice = is_slice
    if current:
        aus.append(current)
    return aus


def rtp_packets(au, seq, timestamp, ssrc=0x1234):
    """RTP packets of one access unit (marker on the last)."""
    payloads = []
    for unit in au:
        if len(unit) <= MTU:
            payloads.append(unit)
            continue
        header, body = unit[0], unit[1:]
        indicator = (header & 0xE0) | 28  # FU-A
        first = True
        while body:
            chunk, body = body[:MTU], body[MTU:]
            fu = (header & 0x1F) | (0x80 if first else 0) | (0x40 if not body else 0)
            payloads.append(bytes([indicator, fu]) + chunk)
            first = False
    packets = []
    for n, payload in enumerate(payloads):
        marker = 0x80 if n == len(payloads) - 1 else 0
        packets.append(struct.pack("!BBHII", 0x80, marker | 96, (seq + n) & 0xFFFF,
                                   timestamp & 0xFFFFFFFF, ssrc) + payload)
    return packets, seq + len(payloads)


def read_request(conn, buf):
    """One RTSP request (lines and headers) from `conn`; (method, headers, rest)."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(4096)
        if not data:
            return None, None, buf
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode(errors="replace").split("\r\n")
    method = lines[0].split(" ")[0]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        buf += conn.recv(4096)
    return method, headers, buf[length:]


def reply(conn, cseq, status="200 OK", extra="", body=""):
    msg = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}"
    if body:
        msg += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n"
    conn.sendall((msg + "\r\n" + body).encode())


def serve(conn, aus, fps, seconds, port):
    buf = b""
    playing = False
    while not playing:
        method, headers, buf = read_request(conn, buf)
        if method is None:
            return
        cseq = headers.get("cseq", "0")
        if method == "OPTIONS":
            reply(conn, cseq, extra="Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n")
        elif method == "DESCRIBE":
            sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\n"
                   "t=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                   "a=fmtp:96 packetization-mode=1\r\na=control:track0\r\n")
            reply(conn, cseq, extra=f"Content-Base: rtsp://127.0.0.1:{port}/live/\r\n", body=sdp)
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "TCP" not in transport:
                reply(conn, cseq, status="461 Unsupported Transport")
                continue
            reply(conn, cseq, extra="Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                                    "Session: 12345678\r\n")
        elif method == "PLAY":
            reply(conn, cseq, extra="Session: 12345678\r\n")
            playing = True
        else:
            reply(conn, cseq)
    start = time.monotonic()
    seq, frame = 0, 0
    conn.setblocking(True)
    while seconds <= 0 or time.monotonic() - start < seconds:
        due = start + frame / fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        packets, seq = rtp_packets(aus[frame % len(aus)], seq, frame * int(90000 / fps))
        for p in packets:
            conn.sendall(b"$" + bytes([0]) + struct.pack("!H", len(p)) + p)
        frame += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--fps", type=float, default=25)
    p.add_argument("--seconds", type=float, default=0)
    args = p.parse_args()
    with open(args.file, "rb") as f:
        aus = access_units(f.read())
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(4)
    while True:
        conn, _ = listener.accept()
        try:
            serve(conn, aus, args.fps, args.seconds, args.port)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            conn.close()


if __name__ == "__main__":
    main()
