import ArgumentParser
import Foundation
import TabbyRouting

/// `tabbyctl node status`: this node's BGP sessions, read from BIRD's control socket (what
/// `calicoctl node status` shows).
public struct NodeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Inspect this node's routing.",
        subcommands: [Status.self]
    )

    public init() {}

    public struct Status: ParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Show this node's BGP sessions (tabbyd --routing bgp).",
            discussion: """
                Asks BIRD on its control socket (the one tabbyd starts it with) for its protocols
                and shows every BGP session: the peer's address, the peer type (node-to-node mesh,
                global, node specific), BIRD's state, since when, and the BGP state or last error.
                Exits 1 when BIRD does not answer. -o json prints
                {"bird": {"running", "version"}, "peers": [{"peerAddress", "peerType", "state",
                "since", "info", "protocol"}]}.
                """)

        enum Format: String, ExpressibleByArgument { case text, json }

        @Option(help: "BIRD's control socket.")
        var birdSocket: String = "/run/tabby/bird/bird.ctl"

        @Option(name: .shortAndLong, help: "text or json.")
        var output: Format = .text

        public init() {}

        struct Peer: Codable, Equatable {
            var peerAddress: String
            var peerType: String
            var state: String
            var since: String
            var info: String
            var `protocol`: String
        }

        public func run() throws {
            let control: BIRDControl
            let rows: [BIRDProtocolStatus]
            do {
                control = try BIRDControl(socketPath: birdSocket)
                rows = try control.protocols()
            } catch {
                if output == .json {
                    print(#"{"bird": {"running": false, "error": \#(Self.quoted("\(error)"))}, "peers": []}"#)
                } else {
                    printError("BIRD is not running: \(error)")
                }
                throw ExitStatus.invalidInput
            }
            let peers = Self.peers(rows)
            switch output {
            case .json:
                struct Report: Codable {
                    struct BIRD: Codable {
                        var running: Bool
                        var version: String
                    }
                    var bird: BIRD
                    var peers: [Peer]
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                let version = control.greeting.replacingOccurrences(of: " ready.", with: "")
                let report = Report(bird: .init(running: true, version: version), peers: peers)
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            case .text:
                print("BIRD is running (\(control.greeting.replacingOccurrences(of: " ready.", with: ""))).")
                print()
                print(Self.table(peers))
            }
        }

        /// The BGP sessions among BIRD's protocols; the peer comes from the session's name.
        static func peers(_ rows: [BIRDProtocolStatus]) -> [Peer] {
            rows.filter { $0.proto == "BGP" }.map { row in
                let parsed = BGPSession.parse(protocolName: row.name)
                return Peer(
                    peerAddress: parsed?.address ?? row.name, peerType: parsed?.kind.rawValue ?? "unknown",
                    state: row.state, since: row.since, info: row.info, protocol: row.name)
            }
        }

        /// calicoctl's layout.
        static func table(_ peers: [Peer]) -> String {
            let v4 = peers.filter { !$0.peerAddress.contains(":") || $0.peerAddress.contains(".") }
            let v6 = peers.filter { !v4.contains($0) }
            func render(_ peers: [Peer], family: String) -> String {
                guard !peers.isEmpty else { return "\(family) BGP status\nNo \(family) peers found.\n" }
                let header = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
                let rows = peers.map { [$0.peerAddress, $0.peerType, $0.state, $0.since, $0.info] }
                let widths = header.indices.map { column in
                    ([header] + rows).map { $0[column].count }.max() ?? 0
                }
                let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
                func line(_ cells: [String]) -> String {
                    "|"
                        + zip(cells, widths).map { " " + $0 + String(repeating: " ", count: $1 - $0.count) + " " }
                        .joined(separator: "|") + "|"
                }
                return
                    ([
                        "\(family) BGP status", rule, line(header), rule,
                    ] + rows.map(line) + [rule]).joined(separator: "\n") + "\n"
            }
            return render(v4, family: "IPv4") + "\n" + render(v6, family: "IPv6")
        }

        static func quoted(_ text: String) -> String {
            String(decoding: (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
        }
    }
}
