/// Small Python programs run inside pod namespaces (python3 is on every machine of this kind):
/// one server per pod, one prober per source pod and round.
public enum ProbeScripts {
    /// Serves the ports in argv[1] (`80/tcp,81/udp`; default TCP and UDP on 80 and 81): TCP
    /// answers "ok" and closes, UDP echoes "ok".
    public static let server = """
        import socket, select, sys
        specs = (sys.argv[1] if len(sys.argv) > 1 else "80/tcp,81/tcp,80/udp,81/udp").split(",")
        socks = []
        for spec in specs:
            port, proto = spec.split("/")
            if proto == "tcp":
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                t.bind(("0.0.0.0", int(port))); t.listen(128); socks.append(t)
            else:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.bind(("0.0.0.0", int(port))); socks.append(u)
        while True:
            ready, _, _ = select.select(socks, [], [])
            for s in ready:
                if s.type == socket.SOCK_STREAM:
                    c, _ = s.accept()
                    try: c.sendall(b"ok")
                    except OSError: pass
                    c.close()
                else:
                    data, peer = s.recvfrom(2048)
                    s.sendto(b"ok", peer)
        """

    /// argv: timeout, then targets `kind,address,port`, then optionally a first UDP source port
    /// (target i sends from it + i: a caller that never repeats a port within conntrack's UDP
    /// timeout makes sure no probe rides on an earlier probe's conntrack entry, which a
    /// kernel-chosen ephemeral port can repeat); prints 1 or 0 per target, in order.
    public static let prober = """
        import socket, sys, threading, os, struct, time
        timeout = float(sys.argv[1])
        targets = [t.split(",") for t in sys.argv[2].split()]
        udp_base = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        results = ["0"] * len(targets)
        def checksum(data):
            s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
            s = (s >> 16) + (s & 0xffff); s += s >> 16
            return (~s) & 0xffff
        def run(i, kind, addr, port):
            try:
                if kind == "tcp":
                    s = socket.create_connection((addr, int(port)), timeout=timeout)
                    s.settimeout(timeout); ok = s.recv(2) == b"ok"; s.close()
                elif kind == "udp":
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
                    if udp_base: s.bind(("0.0.0.0", udp_base + i))
                    s.sendto(b"x", (addr, int(port))); ok = s.recvfrom(16)[0] == b"ok"; s.close()
                else:
                    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(timeout)
                    ident = (os.getpid() * 31 + i) & 0xffff
                    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
                    packet = struct.pack("!BBHHH", 8, 0, checksum(header + b"tabby!"), ident, 1) + b"tabby!"
                    s.sendto(packet, (addr, 0)); ok = False; end = time.time() + timeout
                    while time.time() < end and not ok:
                        data = s.recv(2048); icmp = data[(data[0] & 0x0f) * 4:]
                        ok = icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident
                    s.close()
                results[i] = "1" if ok else "0"
            except OSError:
                results[i] = "0"
        threads = [threading.Thread(target=run, args=(i, *t)) for i, t in enumerate(targets)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(" ".join(results))
        """
}
