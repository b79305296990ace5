import Foundation
import TabbyCore

/// Runs one CNI invocation: reads env and stdin, dispatches, writes the result or error JSON to
/// stdout, and returns the exit status. Logs never go to stdout.
public enum CNIMain {
    public static func run(
        program: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        stdin: Data,
        datapath: (any PodDatapath)? = nil
    ) async -> (output: Data, status: Int32) {
        var version = CNIVersion.latest
        do {
            let env = try CNIEnvironment(environment)
            if env.command == .version {
                let object: [String: JSONValue] = [
                    "cniVersion": .string(CNIVersion.latest),
                    "supportedVersions": .array(CNIVersion.supported.map(JSONValue.string)),
                ]
                return (Data(JSONValue.object(object).serialized().utf8), 0)
            }
            let config = try NetworkConfig(data: stdin)
            version = config.cniVersion
            try CNIVersion.check(config.cniVersion)
            if ["GC", "STATUS"].contains(env.command.rawValue),
                config.cniVersion.hasPrefix("0.") || config.cniVersion == "1.0.0"
            {
                throw CNIError.incompatibleVersion(
                    "\(env.command.rawValue) needs cniVersion 1.1.0 (the config says \(config.cniVersion))")
            }
            switch program {
            case "tabby-ipam":
                let output = try await IPAMPlugin(environment: env, config: config).run()
                return (output ?? Data(), 0)
            default:
                let log = try PluginLog(
                    config: config, context: "\(env.command.rawValue) \(env.containerID ?? "-") \(env.netns ?? "-")")
                log.debug("config read")
                do {
                    let output = try await NetworkPlugin(
                        environment: env, config: config, datapath: datapath ?? KernelDatapath(), log: log
                    ).run()
                    return (output ?? Data(), 0)
                } catch {
                    log.error("\(error)")
                    throw error
                }
            }
        } catch let error as CNIError {
            return (error.json(cniVersion: version), 1)
        } catch {
            return (CNIError.ioFailure("\(error)").json(cniVersion: version), 1)
        }
    }
}
