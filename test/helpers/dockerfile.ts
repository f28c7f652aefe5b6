import { readFileSync } from 'node:fs';
import { DockerfileParser, JSONInstruction, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';

// The Dockerfile as data (issue 14 part 1): parsed by dockerfile-ast, linted by dockerfile-utils
// (the parser and linter of VS Code's Docker support). No container runtime is needed: the file is
// checked, not built.

export interface DockerInstruction {
  keyword: string;
  /** Arguments as the builder sees them: the JSON strings of the exec form, else the shell words. */
  args: string[];
  /** Flags such as `--from=build`, as `name=value`. */
  flags: string[];
}

export interface DockerStage {
  /** The `AS` name, if any. */
  name: string | null;
  image: string;
  instructions: DockerInstruction[];
}

export interface ParsedDockerfile {
  stages: DockerStage[];
  /** The linter's findings as `line N: message`; [] for a clean file. */
  diagnostics: string[];
}

export function readDockerfile(path: string): ParsedDockerfile {
  const text = readFileSync(path, 'utf8');
  const diagnostics = validate(text, {}).map(
    (d) => `line ${d.range.start.line + 1}: ${typeof d.message === 'string' ? d.message : d.message.value}`,
  );
  const stages: DockerStage[] = [];
  for (const instruction of DockerfileParser.parse(text).getInstructions()) {
    const parsed = toData(instruction);
    if (parsed.keyword === 'FROM') {
      const as = parsed.args.findIndex((a) => a.toUpperCase() === 'AS');
      stages.push({
        name: as === -1 ? null : (parsed.args[as + 1] ?? null),
        image: parsed.args[0] ?? '',
        instructions: [],
      });
    } else {
      stages.at(-1)?.instructions.push(parsed);
    }
  }
  return { stages, diagnostics };
}

function toData(instruction: Instruction): DockerInstruction {
  const keyword = instruction.getKeyword().toUpperCase();
  const json = instruction instanceof JSONInstruction ? instruction.getJSONStrings().map((s) => s.getJSONValue()) : [];
  const args = json.length > 0 ? json : instruction.getArguments().map((a) => a.getValue());
  const withFlags = instruction as Instruction & {
    getFlags?: () => Array<{ getName(): string; getValue(): string | null }>;
  };
  const flags = (withFlags.getFlags?.() ?? []).map((f) => `${f.getName()}=${f.getValue() ?? ''}`);
  return { keyword, args, flags };
}

/** The instructions of `keyword` in a stage. */
export function instructionsOf(stage: DockerStage, keyword: string): DockerInstruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}
