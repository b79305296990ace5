// swift-tools-version: 6.1
// Tabby: Kubernetes networking (Calico's job) in Swift. See README.md and docs/architecture.md.
import PackageDescription

let package = Package(
    name: "Tabby",
    platforms: [.macOS(.v15)],
    products: [
        // Libraries other tools may embed.
        .library(name: "TabbyCore", targets: ["TabbyCore"]),
        .library(name: "TabbyStore", targets: ["TabbyStore"]),
        .library(name: "TabbyIPAM", targets: ["TabbyIPAM"]),
        .library(name: "TabbyNetlink", targets: ["TabbyNetlink"]),
        .library(name: "TabbyCNI", targets: ["TabbyCNI"]),
        .library(name: "TabbyCommands", targets: ["TabbyCommands"]),
        .library(name: "TabbyPolicy", targets: ["TabbyPolicy"]),
        .library(name: "TabbyDataplane", targets: ["TabbyDataplane"]),
        .library(name: "TabbyNftables", targets: ["TabbyNftables"]),
        .library(name: "TabbyIptables", targets: ["TabbyIptables"]),
        .library(name: "TabbyEBPF", targets: ["TabbyEBPF"]),
        // Executables sharing one engine.
        .executable(name: "tabbyctl", targets: ["tabbyctl"]),
        .executable(name: "tabby", targets: ["tabby"]),
        .executable(name: "tabbyd", targets: ["tabbyd"]),
    ],
    // Dataplane backends are chosen at build time; among those compiled in, `tabbyd --dataplane`
    // picks one at run time. `swift build --traits NFTables` builds with nftables only.
    traits: [
        .default(enabledTraits: ["NFTables", "IPTables", "EBPF"]),
        .trait(name: "NFTables", description: "the nftables backend (libnftnl, libmnl)"),
        .trait(name: "IPTables", description: "the iptables backend (iptables-restore, ipset; nft or legacy)"),
        .trait(name: "EBPF", description: "the eBPF backend (tc programs built by the BPFCompiler plugin, libbpf)"),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // Addresses, CIDRs, labels, selectors and the projectcalico.org/v3 resource model. No OS calls.
        .target(
            name: "TabbyCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "Modules/TabbyCore"
        ),
        // Policy resolution, compilation to the dataplane-neutral IR, and the reference evaluator.
        .target(name: "TabbyPolicy", dependencies: ["TabbyCore"], path: "Modules/TabbyPolicy"),
        // The dataplane protocol every backend implements, and the conformance kit they all pass.
        .target(
            name: "TabbyDataplane",
            dependencies: ["TabbyCore", "TabbyPolicy", "TabbyNetlink"],
            path: "Modules/TabbyDataplane"
        ),
        // The conformance kit: pods in namespaces, real packets, verdicts against the evaluator.
        .target(
            name: "TabbyDataplaneConformance",
            dependencies: [
                "TabbyCore", "TabbyPolicy", "TabbyDataplane", "TabbyNetlink", "TabbyCNI", "TabbyTestSupport",
                "TabbyLab",
            ],
            path: "Modules/TabbyDataplaneConformance"
        ),
        // The nftables backend: the IR compiled to sets, verdict maps and chains, sent through libnftnl.
        .target(
            name: "TabbyNftables",
            dependencies: ["TabbyCore", "TabbyPolicy", "TabbyDataplane", "TabbyNetlink", "CMNL", "CNFTNL"],
            path: "Modules/TabbyNftables"
        ),
        // The iptables backend: Calico's chain layout and ipsets, written with iptables-restore.
        .target(
            name: "TabbyIptables",
            dependencies: ["TabbyCore", "TabbyPolicy", "TabbyDataplane"],
            path: "Modules/TabbyIptables"
        ),
        // The eBPF backend: tc programs (bpf/*.bpf.c, compiled and embedded by the BPFCompiler plugin),
        // loaded, pinned and attached through libbpf.
        .target(
            name: "TabbyEBPF",
            dependencies: ["TabbyCore", "TabbyPolicy", "TabbyDataplane", "TabbyNetlink", "CBPF"],
            path: "Modules/TabbyEBPF",
            exclude: ["bpf"],
            plugins: ["BPFCompiler"]
        ),
        // clang -target bpf over a target's bpf/*.bpf.c, each object embedded as a generated Swift source.
        .plugin(name: "BPFCompiler", capability: .buildTool(), path: "Plugins/BPFCompiler"),
        // libbpf 1.1 (objects, maps, tc clsact, BPF_PROG_TEST_RUN).
        .systemLibrary(
            name: "CBPF",
            path: "Modules/CBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev"])]
        ),
        // The revisioned datastore API, its SQLite and etcd backends, and the typed resource client.
        .target(
            name: "TabbyStore",
            dependencies: [
                "TabbyCore", "CTabbySQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the one-shot store (the same libsqlite3 GRDB uses).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Modules/TabbyStore"
        ),
        // Calico-style block IPAM on the datastore.
        .target(
            name: "TabbyIPAM",
            dependencies: ["TabbyCore", "TabbyStore"],
            path: "Modules/TabbyIPAM"
        ),
        // CNI spec types, verb dispatch, and the plugins (tabby-ipam today).
        // libmnl and the rtnetlink UAPI headers.
        .systemLibrary(
            name: "CMNL",
            path: "Modules/CMNL",
            pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]
        ),
        // libnftnl (nftables objects and expressions as netlink messages).
        .systemLibrary(
            name: "CNFTNL",
            path: "Modules/CNFTNL",
            pkgConfig: "libnftnl",
            providers: [.apt(["libnftnl-dev"])]
        ),
        // sqlite3_db_config (variadic, out of Swift's reach) for short-lived datastore connections.
        .target(name: "CTabbySQLite", path: "Modules/CTabbySQLite", linkerSettings: [.linkedLibrary("sqlite3")]),
        // The few C helpers Swift cannot reach (setns, unshare, CLONE_NEWNET), TB_ prefix.
        .target(name: "CTabbyShims", path: "Modules/CTabbyShims"),
        // rtnetlink over libmnl: links, addresses, routes, neighbours, namespaces, sysctls.
        .target(
            name: "TabbyNetlink",
            dependencies: ["CMNL", "CTabbyShims", "TabbyCore"],
            path: "Modules/TabbyNetlink"
        ),
        .target(
            name: "TabbyCNI",
            dependencies: ["TabbyCore", "TabbyStore", "TabbyIPAM", "TabbyNetlink"],
            path: "Modules/TabbyCNI"
        ),
        .executableTarget(
            name: "tabby",
            dependencies: ["TabbyCNI"],
            path: "Modules/tabby",
            // A runtime starts the plugin once per pod and verb: a position-dependent executable
            // needs none of the ~120,000 load-time relocations a PIE of this size does, and
            // without exported symbols the runtime's start-up dladdr scans 631 symbols, not
            // 34,000. Both measurably shorten every start (docs/benchmarks.md).
            linkerSettings: [
                .unsafeFlags(
                    ["-Xclang-linker", "-no-pie", "-Xlinker", "--no-export-dynamic"],
                    .when(configuration: .release))
            ]
        ),
        // The multi-node lab of network namespaces (tabbyctl lab).
        .target(
            name: "TabbyLab",
            dependencies: ["TabbyCore", "TabbyNetlink"],
            path: "Modules/TabbyLab"
        ),
        // BGP: bird2 configuration from the BGP resources, and BIRD's control socket.
        .target(name: "TabbyRouting", dependencies: ["TabbyCore"], path: "Modules/TabbyRouting"),
        // The node agent's engine: datastore watch -> policy engine -> dataplane, routes, health.
        .target(
            name: "TabbyAgent",
            dependencies: [
                "TabbyCore", "TabbyStore", "TabbyIPAM", "TabbyPolicy", "TabbyDataplane", "TabbyNetlink",
                "TabbyRouting", "CTabbyShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Modules/TabbyAgent"
        ),
        .executableTarget(
            name: "tabbyd",
            dependencies: [
                "TabbyAgent", "TabbyCore", "TabbyStore", "TabbyDataplane", "TabbyNetlink",
                .target(name: "TabbyNftables", condition: .when(traits: ["NFTables"])),
                .target(name: "TabbyIptables", condition: .when(traits: ["IPTables"])),
                .target(name: "TabbyEBPF", condition: .when(traits: ["EBPF"])),
                "TabbyCommands",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Modules/tabbyd"
        ),
        // Fakes shared by Tests/ and IntegrationTests/.
        .target(
            name: "TabbyTestSupport",
            dependencies: ["TabbyStore", "TabbyCNI", "TabbyPolicy"],
            path: "Modules/TabbyTestSupport"
        ),
        // tabbyctl's commands, one subcommand per file.
        .target(
            name: "TabbyCommands",
            dependencies: [
                "TabbyCore",
                "TabbyStore",
                "TabbyIPAM",
                "TabbyPolicy",
                "TabbyLab",
                "TabbyRouting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Modules/TabbyCommands"
        ),
        .executableTarget(
            name: "tabbyctl",
            dependencies: ["TabbyCommands"],
            path: "Modules/tabbyctl"
        ),
        .testTarget(
            name: "TabbyCoreTests",
            dependencies: [
                "TabbyCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            path: "Tests/TabbyCoreTests",
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "TabbyPolicyTests",
            dependencies: ["TabbyPolicy"],
            path: "Tests/TabbyPolicyTests"
        ),
        .testTarget(
            name: "TabbyStoreTests",
            dependencies: ["TabbyStore", "TabbyTestSupport", "tabby-store-helper"],
            path: "Tests/TabbyStoreTests"
        ),
        .testTarget(
            name: "TabbyIPAMTests",
            dependencies: ["TabbyIPAM", "TabbyTestSupport"],
            path: "Tests/TabbyIPAMTests"
        ),
        // Unprivileged: a fake transport, exact request bytes, canned replies.
        .testTarget(
            name: "TabbyNetlinkTests",
            dependencies: ["TabbyNetlink", "TabbyCore", "CMNL"],
            path: "Tests/TabbyNetlinkTests"
        ),
        // The real kernel, in namespaces the tests create (needs CAP_NET_ADMIN).
        .testTarget(
            name: "NetlinkKernelTests",
            dependencies: ["TabbyNetlink", "TabbyCore"],
            path: "IntegrationTests/NetlinkKernelTests"
        ),
        .testTarget(
            name: "TabbyNftablesTests",
            dependencies: [
                "TabbyNftables", "TabbyPolicy", "TabbyCore", "TabbyDataplane", "CNFTNL", "CMNL", "TabbyTestSupport",
            ],
            path: "Tests/TabbyNftablesTests"
        ),
        .testTarget(
            name: "TabbyIptablesTests",
            dependencies: ["TabbyIptables", "TabbyPolicy", "TabbyCore", "TabbyDataplane", "TabbyTestSupport"],
            path: "Tests/TabbyIptablesTests",
            resources: [.copy("sample-restore.txt")]
        ),
        // libnftnl batches against the kernel in fresh namespaces (root).
        .testTarget(
            name: "NftablesKernelTests",
            dependencies: ["TabbyNftables"],
            path: "IntegrationTests/NftablesKernelTests"
        ),
        // Unprivileged: the eBPF maps' byte layouts and port-range prefixes.
        .testTarget(
            name: "TabbyEBPFTests",
            dependencies: [.target(name: "TabbyEBPF", condition: .when(traits: ["EBPF"])), "TabbyCore", "TabbyPolicy"],
            path: "Tests/TabbyEBPFTests"
        ),
        // The tc program on crafted packets (BPF_PROG_TEST_RUN) and attached in fresh namespaces (root).
        .testTarget(
            name: "EBPFKernelTests",
            dependencies: [
                .target(name: "TabbyEBPF", condition: .when(traits: ["EBPF"])), "TabbyCore", "TabbyNetlink",
                "TabbyPolicy", "TabbyDataplane",
            ],
            path: "IntegrationTests/EBPFKernelTests"
        ),
        // Every compiled-in dataplane against the conformance kit (root: namespaces, nftables).
        .testTarget(
            name: "DataplaneConformanceTests",
            dependencies: [
                "TabbyDataplaneConformance", "TabbyDataplane", "TabbyNftables", "TabbyIptables", "TabbyPolicy",
                "TabbyCore", "TabbyNetlink",
                .target(name: "TabbyEBPF", condition: .when(traits: ["EBPF"])),
            ],
            path: "IntegrationTests/DataplaneConformanceTests"
        ),
        .testTarget(
            name: "TabbyAgentTests",
            dependencies: ["TabbyAgent", "TabbyCore", "TabbyDataplane", "TabbyStore", "TabbyTestSupport"],
            path: "Tests/TabbyAgentTests"
        ),
        // Rendered BIRD configurations pinned; the control protocol against a fake socket.
        .testTarget(
            name: "TabbyRoutingTests",
            dependencies: ["TabbyRouting", "TabbyCore"],
            path: "Tests/TabbyRoutingTests"
        ),
        .testTarget(
            name: "TabbyCNITests",
            dependencies: ["TabbyCNI", "TabbyCore", "TabbyIPAM", "TabbyStore", "TabbyTestSupport"],
            path: "Tests/TabbyCNITests"
        ),
        .testTarget(
            name: "TabbyCommandsTests",
            dependencies: ["TabbyCommands", "TabbyRouting"],
            path: "Tests/TabbyCommandsTests"
        ),
        // Runs the built executables as a user would, against real SQLite files and a real etcd;
        // later the real kernel and BIRD.
        .testTarget(
            name: "TabbyIntegrationTests",
            dependencies: [
                "TabbyCNI", "TabbyCore", "TabbyStore", "TabbyIPAM", "TabbyTestSupport", "TabbyDataplaneConformance",
            ],
            path: "IntegrationTests/TabbyIntegrationTests"
        ),
        // The policy engine benchmark (tools/bench/policy runs it in release mode).
        .executableTarget(
            name: "tabby-policy-bench",
            dependencies: ["TabbyCore", "TabbyPolicy"],
            path: "Benchmarks/PolicyBench"
        ),
        // The program docs/embedding.md shows: TabbyPolicy used on its own.
        .executableTarget(
            name: "explain-packet",
            dependencies: ["TabbyCore", "TabbyPolicy"],
            path: "Examples/ExplainPacket"
        ),
        // The datastore benchmark (tools/bench/datastore runs it in release mode).
        .executableTarget(
            name: "tabby-store-bench",
            dependencies: ["TabbyStore"],
            path: "Benchmarks/StoreBench"
        ),
        // The IPAM plugin benchmark against host-local (tools/bench/ipam runs it).
        // The nftables and iptables backends under load against the no-rule baseline
        // (tools/bench/dataplanes).
        .executableTarget(
            name: "tabby-dataplane-bench",
            dependencies: [
                "TabbyNftables", "TabbyIptables", "TabbyDataplane", "TabbyPolicy", "TabbyCore", "TabbyNetlink",
                .target(name: "TabbyEBPF", condition: .when(traits: ["EBPF"])),
            ],
            path: "Benchmarks/DataplaneBench"
        ),
        .executableTarget(
            name: "tabby-cni-bench",
            dependencies: ["TabbyTestSupport"],
            path: "Benchmarks/CNIBench"
        ),
        .executableTarget(
            name: "tabby-ipam-bench",
            dependencies: ["TabbyTestSupport"],
            path: "Benchmarks/IPAMBench"
        ),
        // A test helper: a child process doing compare-and-swap increments or puts on one key.
        .executableTarget(
            name: "tabby-store-helper",
            dependencies: ["TabbyStore", "TabbyIPAM"],
            path: "IntegrationTests/StoreHelper"
        ),
    ],
    swiftLanguageModes: [.v6]
)
