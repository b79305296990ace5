import Foundation
import Synchronization
import TabbyCore
import TabbyDataplane

/// Which iptables the host uses: the nf_tables-based one (`iptables-nft`, rules kept as
/// nftables objects in tables `ip filter` etc.) or the legacy x_tables one. Both exist in every
/// kernel here; rules of one are invisible to the other's tools, so Tabby must write with the
/// same flavour as the rest of the host (kube-proxy, Docker) or the host's rules and Tabby's
/// would be evaluated in an order neither controls.
public enum IptablesFlavour: String, Sendable, Hashable, CaseIterable {
    case nft
    case legacy

    /// The other flavour (whose leftovers a sweep removes after a switch).
    public var other: IptablesFlavour { self == .nft ? .legacy : .nft }

    /// `TABBY_IPTABLES_BACKEND=nft|legacy` if set, otherwise what `iptables -V` reports
    /// (`iptables v1.8.9 (nf_tables)` or `(legacy)`), nft when it cannot tell (Debian's default).
    public static func detect(environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(DataplaneError) -> IptablesFlavour
    {
        if let value = environment["TABBY_IPTABLES_BACKEND"], !value.isEmpty {
            guard let flavour = IptablesFlavour(rawValue: value.lowercased()) else {
                throw .unsupported("TABBY_IPTABLES_BACKEND=\(value): must be nft or legacy")
            }
            return flavour
        }
        let version = (try? IptablesProcess.run(["/usr/sbin/iptables", "-V"], namespacePath: nil)) ?? ""
        return parse(version: version) ?? .nft
    }

    /// The flavour named by `iptables -V`'s output, nil if it names none.
    public static func parse(version: String) -> IptablesFlavour? {
        if version.contains("nf_tables") { return .nft }
        if version.contains("legacy") { return .legacy }
        return nil
    }

    func tool(_ family: IPFamily, _ name: String) -> String {
        "/usr/sbin/\(family == .v4 ? "iptables" : "ip6tables")-\(rawValue)-\(name)"
    }
}

/// What the backend runs: `iptables-restore`/`iptables-save` of its flavour and `ipset`. A fake
/// records the inputs in unit tests.
public protocol IptablesRunner: Sendable {
    var flavour: IptablesFlavour { get }
    /// `iptables-restore --noflush` (`ip6tables-restore` for IPv6) of `input`: all of it or nothing.
    func restore(_ family: IPFamily, _ input: String) throws(DataplaneError)
    /// `iptables-save -t <table>`.
    func save(_ family: IPFamily, table: String) throws(DataplaneError) -> String
    /// `ipset restore -exist` of `input`.
    func ipsetRestore(_ input: String) throws(DataplaneError)
    /// `ipset save`.
    func ipsetSave() throws(DataplaneError) -> String
    /// nftables tables of Tabby's (`inet tabby`, what the nftables backend made): deletes them and
    /// returns their names. Empty when nft is not installed.
    func deleteNftablesTables() throws(DataplaneError) -> [String]
}

/// Runs the tools as processes, inside the network namespace at `namespacePath` when given
/// (through `nsenter`), otherwise in the caller's (tabbyd runs in its node's namespace).
public struct IptablesProcessRunner: IptablesRunner {
    public let flavour: IptablesFlavour
    public let namespacePath: String?

    public init(flavour: IptablesFlavour, namespacePath: String? = nil) {
        self.flavour = flavour
        self.namespacePath = namespacePath
    }

    public func restore(_ family: IPFamily, _ input: String) throws(DataplaneError) {
        // -w: legacy takes the xtables lock, shared by every namespace on the machine.
        _ = try IptablesProcess.run(
            [flavour.tool(family, "restore"), "--noflush", "-w", "10"], namespacePath: namespacePath, input: input)
    }

    public func save(_ family: IPFamily, table: String) throws(DataplaneError) -> String {
        if flavour == .legacy {
            // Reading a legacy table instantiates it in the namespace: look at the list of
            // tables that exist first (per namespace, in /proc/net).
            let names = try IptablesProcess.run(
                ["/usr/bin/cat", "/proc/net/\(family == .v4 ? "ip" : "ip6")_tables_names"], namespacePath: namespacePath
            )
            guard names.split(separator: "\n").contains(Substring(table)) else { return "" }
        }
        return try IptablesProcess.run([flavour.tool(family, "save"), "-t", table], namespacePath: namespacePath)
    }

    public func ipsetRestore(_ input: String) throws(DataplaneError) {
        _ = try IptablesProcess.run(
            ["/usr/sbin/ipset", "restore", "-exist"], namespacePath: namespacePath, input: input)
    }

    public func ipsetSave() throws(DataplaneError) -> String {
        try IptablesProcess.run(["/usr/sbin/ipset", "save"], namespacePath: namespacePath)
    }

    public func deleteNftablesTables() throws(DataplaneError) -> [String] {
        let nft = "/usr/sbin/nft"
        guard FileManager.default.isExecutableFile(atPath: nft) else { return [] }
        var deleted: [String] = []
        for line in try IptablesProcess.run([nft, "list", "tables"], namespacePath: namespacePath).split(
            separator: "\n")
        {
            let words = line.split(separator: " ")
            // `table inet tabby`: the nftables backend's (and any older `tabby*` table of Tabby's).
            guard words.count == 3, words[0] == "table", words[2].hasPrefix("tabby") else { continue }
            _ = try IptablesProcess.run(
                [nft, "delete", "table", String(words[1]), String(words[2])], namespacePath: namespacePath)
            deleted.append("\(words[1]) \(words[2])")
        }
        return deleted
    }
}

enum IptablesProcess {
    /// Runs `command` (in the namespace when given), feeding `input`; throws with the tool's
    /// stderr when it fails.
    static func run(_ command: [String], namespacePath: String?, input: String = "") throws(DataplaneError) -> String {
        var full = command
        if let namespacePath { full = ["/usr/bin/nsenter", "--net=\(namespacePath)"] + command }
        let name = command.map { ($0 as NSString).lastPathComponent }.prefix(3).joined(separator: " ")
        let result: Command.Result
        do {
            result = try Command.run(full, input: input)
        } catch {
            throw .kernel("\(name): \(error)")
        }
        guard result.status == 0 else {
            let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw .kernel("\(name) failed (exit \(result.status)): \(message)")
        }
        return result.stdout
    }
}
