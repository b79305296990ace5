// swift-tools-version: 6.1
// Tabby: Kubernetes networking (Calico's job) in Swift. See README.md and docs/architecture.md.
import PackageDescription

let package = Package(
    name: "Tabby",
    platforms: [.macOS(.v15)],
    products: [
        // Libraries other tools may embed.
        .library(name: "TabbyCore", targets: ["TabbyCore"]),
        .library(name: "TabbyCommands", targets: ["TabbyCommands"]),
        // Executables sharing one engine.
        .executable(name: "tabbyctl", targets: ["tabbyctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // Addresses, CIDRs, labels, selectors and the projectcalico.org/v3 resource model. No OS calls.
        .target(
            name: "TabbyCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "Modules/TabbyCore"
        ),
        // tabbyctl's commands, one subcommand per file.
        .target(
            name: "TabbyCommands",
            dependencies: [
                "TabbyCore",
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
            name: "TabbyCommandsTests",
            dependencies: ["TabbyCommands"],
            path: "Tests/TabbyCommandsTests"
        ),
        // Runs the built executables as a user would; later: the real kernel, etcd, BIRD.
        .testTarget(
            name: "TabbyIntegrationTests",
            dependencies: ["TabbyCore"],
            path: "IntegrationTests/TabbyIntegrationTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
