import Testing

@testable import TabbyAgent

/// Which datastore changes make tabbyd recompute routes (and, in BGP mode, BIRD's configuration).
@Suite("tabbyd's routing inputs")
struct RoutingInputsTests {
    @Test(arguments: [
        ("/tabby/v3/bgppeers/tor", true),
        ("/tabby/v3/bgpconfigurations/default", true),
        ("/tabby/v3/nodes/node-1", true),
        ("/tabby/v3/ippools/default-ipv4-ippool", true),
        ("/tabby/ipam/v2/affinities/node-1/ipv4/10.65.1.0-26", true),
        ("/tabby/v3/networkpolicies/x/deny", false),
        ("/tabby/v3/workloadendpoints/x/node--1-k8s-a-eth0", false),
    ])
    func keys(key: String, affects: Bool) {
        #expect(PolicySync.affectsRouting(key) == affects)
    }
}
