// tabbyctl: the operator's CLI. Everything lives in TabbyCommands so tools can embed it.
import TabbyCommands

await Tabbyctl.runFromCommandLine()
