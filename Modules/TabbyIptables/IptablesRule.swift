import TabbyCore

/// One iptables rule, rendered exactly as `iptables-save` prints it: the fixed options first in
/// iptables' own order (`-s`, `-d`, `-i`, `-o`, `-p`, each possibly negated), then
/// `-m comment --comment "cali:<hash>"`, then the other matches in the order given, then the
/// target. The hash (FNV-1a of the chain, the rule's position and the rest of the rule) makes
/// every rule recognisably Tabby's and distinct from its neighbours, as Calico's `cali:` comments
/// do.
struct IptablesRule: Sendable, Hashable {
    struct Option: Sendable, Hashable {
        var value: String
        var negated = false
    }

    var source: Option?
    var destination: Option?
    var inInterface: Option?
    var outInterface: Option?
    var protocolNumber: Option?
    /// `-m ...` matches, in order, each as written (`-m mark --mark 0x0/0x10000`).
    var matches: [String] = []
    /// `-j ACCEPT`, `-g cali-fw-cali123`, `-j MARK --set-xmark 0x10000/0x10000`.
    var target: String

    init(_ matches: [String] = [], _ target: String) {
        self.matches = matches
        self.target = target
    }

    static func input(_ interface: String, _ matches: [String] = [], _ target: String) -> IptablesRule {
        var rule = IptablesRule(matches, target)
        rule.inInterface = Option(value: interface)
        return rule
    }

    static func output(_ interface: String, _ matches: [String] = [], _ target: String) -> IptablesRule {
        var rule = IptablesRule(matches, target)
        rule.outInterface = Option(value: interface)
        return rule
    }

    /// The text after `-A <chain> ` for the rule at `index` (from 0) of `chain`.
    func text(chain: String, index: Int = 0) -> String {
        var fixed: [String] = []
        func add(_ flag: String, _ option: Option?) {
            guard let option else { return }
            fixed.append((option.negated ? "! " : "") + flag + " " + option.value)
        }
        add("-s", source)
        add("-d", destination)
        add("-i", inInterface)
        add("-o", outInterface)
        add("-p", protocolNumber)
        let rest = (matches + [target]).joined(separator: " ")
        let hash = Self.hash("\(chain) \(index) " + (fixed + [rest]).joined(separator: " "))
        return (fixed + ["-m comment --comment \"cali:\(hash)\"", rest]).joined(separator: " ")
    }

    /// 16 hex digits of FNV-1a, 64-bit: stable across processes and restarts.
    static func hash(_ text: String) -> String {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01b3
        }
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The protocol as `iptables-save` prints it for the protocols policy uses; others as
    /// numbers (the save output's names from /etc/protocols are turned back into numbers when
    /// read, see `IptablesSaveParser`).
    static func protocolName(_ number: Int) -> String {
        switch number {
        case 1: return "icmp"
        case 6: return "tcp"
        case 17: return "udp"
        case 58: return "ipv6-icmp"
        case 132: return "sctp"
        case 136: return "udplite"
        default: return String(number)
        }
    }
}
