// tabby: the CNI plugin. Multi-call: invoked as `tabby-ipam` (a link to this binary) it is the
// IPAM plugin. A runtime passes the command in CNI_* variables and the config on stdin.
import Foundation
import TabbyCNI

let program = URL(fileURLWithPath: CommandLine.arguments[0]).lastPathComponent
let input = FileHandle.standardInput.readDataToEndOfFile()
let (output, status) = await CNIMain.run(program: program, stdin: input)
FileHandle.standardOutput.write(output)
exit(status)
