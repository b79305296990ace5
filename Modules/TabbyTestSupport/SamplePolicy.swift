import TabbyCore
import TabbyPolicy

/// The small policy state every backend's unit tests compile and pin (nftables as `nft -f` text,
/// iptables as restore input): namespace x, pods a (10.0.0.1) and b (10.0.0.2) on interfaces
/// `cali0000000000a`/`…b`, profile `kns.x` allowing all, and policy x/db on a: TCP from pods
/// labelled b to ports 80 and 8000-8080 allowed, then everything from 192.168.0.0/16 and
/// fd00::/8 denied.
public enum SamplePolicy {
    public static let manifest = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: x, labels: {ns: x}}
        ---
        apiVersion: projectcalico.org/v3
        kind: WorkloadEndpoint
        metadata: {name: a, namespace: x, labels: {pod: a}}
        spec: {node: n, pod: a, interfaceName: cali0000000000a, ipNetworks: [10.0.0.1/32], profiles: [kns.x]}
        ---
        apiVersion: projectcalico.org/v3
        kind: WorkloadEndpoint
        metadata: {name: b, namespace: x, labels: {pod: b}}
        spec: {node: n, pod: b, interfaceName: cali0000000000b, ipNetworks: [10.0.0.2/32], profiles: [kns.x]}
        ---
        apiVersion: projectcalico.org/v3
        kind: Profile
        metadata: {name: kns.x}
        spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
        ---
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata: {name: db, namespace: x}
        spec:
          selector: pod == 'a'
          types: [Ingress]
          ingress:
          - action: Allow
            protocol: TCP
            source: {selector: pod == 'b'}
            destination: {ports: [80, "8000:8080"]}
          - action: Deny
            source: {nets: [192.168.0.0/16, "fd00::/8"]}
        """

    /// The manifest's resources as engine updates (the manifest is known to be valid).
    public static var updates: [PolicyUpdate] {
        Manifest(text: manifest, source: "SamplePolicy").resources.compactMap(PolicyResource.init).map { .upsert($0) }
    }

    /// The IR the engine compiles from the manifest.
    public static func ir() -> PolicyIR {
        var engine = PolicyEngine()
        _ = engine.apply(updates)
        return engine.ir
    }
}
