// tabby: the CNI plugin. Multi-call: invoked as `tabby-ipam` (a link to this binary) it is the
// IPAM plugin. A runtime passes the command in CNI_* variables and the config on stdin.
import Foundation
import TabbyCNI

// The name this binary was run as (the last path component, without Foundation's URL: its
// set-up shows in every plugin start).
let program = String(CommandLine.arguments[0].split(separator: "/", omittingEmptySubsequences: true).last ?? "tabby")
let input = FileHandle.standardInput.readDataToEndOfFile()
let (output, status) = await CNIMain.run(program: program, stdin: input)
FileHandle.standardOutput.write(output)
exit(status)
