import Foundation
import TabbyCore

/// Reads `iptables-save` and `ipset save` output back into the plan's form, keeping only what is
/// Tabby's: chains named `cali-*`, rules of built-in chains that jump or go to one, and sets
/// named `cali40*`/`cali60*`.
public enum IptablesSaveParser {
    static let builtInChains: Set<String> = ["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"]

    /// Tabby's chains and hooks in one table's `iptables-save -t <table>` output.
    public static func table(_ text: String) -> IptablesTable {
        var table = IptablesTable()
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix(":") {
                let name = String(line.dropFirst().prefix { $0 != " " })
                if IptablesPlan.isTabbyChain(name) { table.chains[name, default: []] += [] }
                continue
            }
            guard line.hasPrefix("-A ") else { continue }
            let rest = line.dropFirst(3)
            let chain = String(rest.prefix { $0 != " " })
            let rule = normalised(String(rest.dropFirst(chain.count + 1)))
            if IptablesPlan.isTabbyChain(chain) {
                table.chains[chain, default: []].append(rule)
            } else if builtInChains.contains(chain), jumpsToTabby(rule) {
                table.hooks[chain, default: []].append(rule)
            }
        }
        return table
    }

    /// Whether a rule's target is one of Tabby's chains.
    static func jumpsToTabby(_ rule: String) -> Bool {
        rule.contains(" -j cali-") || rule.contains(" -g cali-") || rule.hasPrefix("-j cali-")
            || rule.hasPrefix("-g cali-")
    }

    /// The rule as the compiler writes it: `-p <name>` as Tabby names the protocol (the save
    /// output names protocols from /etc/protocols, `gre` for 47).
    static func normalised(_ rule: String) -> String {
        var words = rule.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for index in words.indices.dropLast() {
            if words[index] == "-m" || words[index] == "-j" || words[index] == "-g" { break }
            guard words[index] == "-p" else { continue }
            let value = words[index + 1]
            if let number = Int(value) {
                words[index + 1] = IptablesRule.protocolName(number)
            } else if let entry = getprotobyname(value) {
                words[index + 1] = IptablesRule.protocolName(Int(entry.pointee.p_proto))
            }
            break
        }
        return words.joined(separator: " ")
    }

    /// Tabby's sets in `ipset save` output, members normalised as the plan holds them.
    public static func sets(_ text: String) -> [String: Ipset] {
        var sets: [String: Ipset] = [:]
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard words.count >= 3, IptablesPlan.isTabbySet(words[1]) else { continue }
            let name = words[1]
            if words[0] == "create" {
                let kind = Ipset.Kind(rawValue: words[2])
                let familyIndex = words.firstIndex(of: "family").map { $0 + 1 }
                let family: IPFamily =
                    familyIndex.flatMap { $0 < words.count ? words[$0] : nil } == "inet6" ? .v6 : .v4
                // A set of another type is reported as one Tabby would never make.
                sets[name] = Ipset(kind: kind ?? .net, family: family)
                if kind == nil { sets[name]?.elements.insert("unexpected type \(words[2])") }
            } else if words[0] == "add", sets[name] != nil {
                var element = words[2]
                if sets[name]?.kind == .net, !element.contains("/") {
                    element += element.contains(":") ? "/128" : "/32"
                }
                sets[name]?.elements.insert(element)
            }
        }
        return sets
    }
}
