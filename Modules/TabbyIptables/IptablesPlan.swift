import TabbyCore

/// What Tabby wants in iptables and ipset, as values: what `IptablesCompiler` produces from the
/// policy IR, what the backend reads back from `iptables-save` and `ipset save`, and what
/// `IptablesUpdate.between` diffs into `iptables-restore --noflush` and `ipset restore -exist`
/// input. Rules are kept exactly as `iptables-save` prints them (after `-A <chain> `), so the
/// kernel's state and the wanted state compare as text.
public struct IptablesPlan: Sendable, Hashable {
    public var tables: [IptablesTableID: IptablesTable] = [:]
    /// IP sets by name (`cali40s:<hash>`, `cali60s:<hash>`, ...).
    public var sets: [String: Ipset] = [:]

    public init() {}

    /// Whether a chain name is Tabby's (Calico's layout: every chain starts with `cali-`).
    public static func isTabbyChain(_ name: String) -> Bool { name.hasPrefix("cali-") }

    /// Whether an IP set name is Tabby's: `cali40`/`cali60` (Calico's prefixes for IPv4/IPv6 sets).
    public static func isTabbySet(_ name: String) -> Bool { name.hasPrefix("cali40") || name.hasPrefix("cali60") }
}

/// One iptables table of one family (`iptables -t filter` or `ip6tables -t nat`).
public struct IptablesTableID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var family: IPFamily
    public var name: String

    public init(_ family: IPFamily, _ name: String) {
        self.family = family
        self.name = name
    }

    public var description: String { "\(family == .v4 ? "iptables" : "ip6tables") -t \(name)" }

    public static func < (lhs: IptablesTableID, rhs: IptablesTableID) -> Bool {
        (lhs.family.rawValue, lhs.name) < (rhs.family.rawValue, rhs.name)
    }
}

public struct IptablesTable: Sendable, Hashable {
    /// Tabby's chains (`cali-*`) and their rules, each as `iptables-save` prints it after
    /// `-A <chain> `.
    public var chains: [String: [String]] = [:]
    /// Tabby's rules in the built-in chains (`FORWARD`: the jump to `cali-FORWARD`), in order.
    /// Other rules of the built-in chains are never read as Tabby's, never changed.
    public var hooks: [String: [String]] = [:]

    public init(chains: [String: [String]] = [:], hooks: [String: [String]] = [:]) {
        self.chains = chains
        self.hooks = hooks
    }
}

/// An ipset: `hash:net` for CIDRs, `hash:ip,port` for named ports.
public struct Ipset: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case net = "hash:net"
        case addressPort = "hash:ip,port"
    }

    public var kind: Kind
    public var family: IPFamily
    /// Members as `ipset save` prints them, normalised: CIDRs always with their prefix length
    /// (`10.0.0.1/32`), address-ports as `10.0.0.1,tcp:80`.
    public var elements: Set<String>

    public init(kind: Kind, family: IPFamily, elements: Set<String> = []) {
        self.kind = kind
        self.family = family
        self.elements = elements
    }

    /// The `create` line's type and family (`hash:net family inet`).
    var createParameters: String {
        "\(kind.rawValue) family \(family == .v4 ? "inet" : "inet6") hashsize 1024 maxelem 1048576"
    }
}

/// The steps from one plan to another, in the order they run: IP sets created and members
/// added; one `iptables-restore --noflush` per family holding every changed table (chains
/// declared, which flushes them, refilled, hooks fixed, unwanted chains deleted); then members
/// removed and sets destroyed, once no rule refers to them.
public struct IptablesUpdate: Sendable, Hashable {
    /// `ipset restore -exist` lines run before the rules change.
    public var ipsetBefore: [String] = []
    /// `iptables-restore --noflush` input per family (only families with a changed table).
    public var restores: [IPFamily: String] = [:]
    /// `ipset restore -exist` lines run after the rules changed.
    public var ipsetAfter: [String] = []

    public init() {}

    public var isEmpty: Bool { ipsetBefore.isEmpty && restores.isEmpty && ipsetAfter.isEmpty }

    /// What turns `old` (the last plan applied, or what was read back from the kernel) into
    /// `new`. Chains are written whole (declared, which flushes them, then appended): only
    /// chains whose rules differ are touched.
    public static func between(_ old: IptablesPlan, _ new: IptablesPlan) -> IptablesUpdate {
        var update = IptablesUpdate()
        for (name, set) in new.sets.sorted(by: { $0.key < $1.key }) {
            let before = old.sets[name]
            if before == nil || before?.kind != set.kind || before?.family != set.family {
                // A set of another type under this name makes `create` fail with ipset's own
                // message naming the set: never seen with Tabby's names (type is in the name).
                update.ipsetBefore.append("create \(name) \(set.createParameters)")
            }
            let present = before?.elements ?? []
            for element in set.elements.subtracting(present).sorted() {
                update.ipsetBefore.append("add \(name) \(element)")
            }
            for element in present.subtracting(set.elements).sorted() {
                update.ipsetAfter.append("del \(name) \(element)")
            }
        }
        for name in old.sets.keys.sorted() where new.sets[name] == nil {
            update.ipsetAfter.append("destroy \(name)")
        }

        var byFamily: [IPFamily: String] = [:]
        for id in Set(old.tables.keys).union(new.tables.keys).sorted() {
            let text = restoreText(old.tables[id] ?? IptablesTable(), new.tables[id] ?? IptablesTable(), table: id.name)
            if let text { byFamily[id.family, default: ""] += text }
        }
        update.restores = byFamily
        return update
    }

    /// One table's part of the restore input, nil when nothing changed.
    static func restoreText(_ old: IptablesTable, _ new: IptablesTable, table: String) -> String? {
        let changed = new.chains.filter { old.chains[$0.key] != $0.value }.keys.sorted()
        let removed = old.chains.keys.filter { new.chains[$0] == nil }.sorted()
        let hooks = Set(old.hooks.keys).union(new.hooks.keys).filter {
            (old.hooks[$0] ?? []) != (new.hooks[$0] ?? [])
        }.sorted()
        guard !changed.isEmpty || !removed.isEmpty || !hooks.isEmpty else { return nil }
        var lines = ["*\(table)"]
        // Declaring a chain creates it or, with --noflush, flushes it: changed chains are
        // rewritten whole, chains to delete are emptied first (-X needs an empty chain).
        for name in (changed + removed).sorted() { lines.append(":\(name) - [0:0]") }
        // Old hooks go before any -X (a referenced chain cannot be deleted).
        for chain in hooks {
            for rule in old.hooks[chain] ?? [] { lines.append("-D \(chain) \(rule)") }
        }
        for name in changed {
            for rule in new.chains[name] ?? [] { lines.append("-A \(name) \(rule)") }
        }
        // Inserted at the top in reverse, so they end up first and in order.
        for chain in hooks {
            for rule in (new.hooks[chain] ?? []).reversed() { lines.append("-I \(chain) 1 \(rule)") }
        }
        for name in removed { lines.append("-X \(name)") }
        lines.append("COMMIT")
        return lines.joined(separator: "\n") + "\n"
    }
}

extension IptablesPlan {
    /// The whole plan as `iptables-save`-style text per table (tests, debugging).
    public var saveText: String {
        var lines: [String] = []
        for (id, table) in tables.sorted(by: { $0.key < $1.key }) {
            lines.append("# \(id)")
            lines.append("*\(id.name)")
            for name in table.chains.keys.sorted() { lines.append(":\(name) - [0:0]") }
            for (chain, rules) in table.hooks.sorted(by: { $0.key < $1.key }) {
                for rule in rules { lines.append("-A \(chain) \(rule)") }
            }
            for (name, rules) in table.chains.sorted(by: { $0.key < $1.key }) {
                for rule in rules { lines.append("-A \(name) \(rule)") }
            }
            lines.append("COMMIT")
        }
        for (name, set) in sets.sorted(by: { $0.key < $1.key }) {
            lines.append("create \(name) \(set.createParameters)")
            for element in set.elements.sorted() { lines.append("add \(name) \(element)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
