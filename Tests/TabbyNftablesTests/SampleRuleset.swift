import TabbyNftables

/// The small ruleset both test suites use (the unit tests pin its bytes, the kernel tests commit it):
///
///     table inet tabby {
///         set cidrs { type ipv4_addr; flags interval; elements = { 10.1.0.0/16, 192.168.5.0/24 } }
///         map dispatch { type ifname : verdict; elements = { "veth-a" : jump from-a } }
///         chain forward { type filter hook forward priority 0; policy accept;
///             ct state established,related accept comment "tabby:est"
///             iifname vmap @dispatch comment "tabby:dispatch" }
///         chain from-a { ip saddr @cidrs tcp dport 80 accept comment "tabby:web" }
///     }
///
/// (In the monorepo this belongs in TabbyTestSupport; it is duplicated in both test targets here.)
enum SampleRuleset {
    static let table = NftTable(family: .inet, name: "tabby")
    static let forward = NftChain(
        table: "tabby", name: "forward", hook: .forward, priority: 0, policy: .accept, type: .filter)
    static let fromA = NftChain(table: "tabby", name: "from-a")
    static let cidrs = NftSet(table: "tabby", name: "cidrs", keyType: [.ipv4Addr], isInterval: true)
    static let cidrElements = [NftSetElement.ipv4("10.1.0.0/16")!, NftSetElement.ipv4("192.168.5.0/24")!]
    static let dispatch = NftSet(table: "tabby", name: "dispatch", keyType: [.ifname], dataType: .verdict)
    static let dispatchElements = [NftSetElement.ifname("veth-a", .jump("from-a"))]

    static let established = NftRule(
        table: "tabby", chain: "forward", comment: "tabby:est",
        .match(.ctStateEstablishedRelated), [.verdict(.accept)])
    static let dispatchRule = NftRule(
        table: "tabby", chain: "forward", comment: "tabby:dispatch", NftExpression.interfaceVmap("dispatch"))
    static let web = NftRule(
        table: "tabby", chain: "from-a", comment: "tabby:web",
        .match(.saddrIn(set: "cidrs")), .match(.tcpDport(80)), [.verdict(.accept)])

    static var batch: NftBatch {
        var batch = NftBatch()
        batch.add(table)
        batch.add(forward)
        batch.add(fromA)
        batch.add(cidrs)
        batch.addElements(cidrElements, to: cidrs)
        batch.add(dispatch)
        batch.addElements(dispatchElements, to: dispatch)
        batch.add(established)
        batch.add(dispatchRule)
        batch.add(web)
        return batch
    }
}
