// Parse LogQL expressions with Grafana's own grammar (@grafana/lezer-logql, the parser of Grafana's Loki editor).
// Usage: node parse.mjs MODULES_DIR < ["expr", ...]
//   -> [{"errors": [[from, to], ...], "kind": "MetricExpr", "names": [["Matcher", "job"], ...], "tree": "..."}, ...]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.argv[2], 'package.json'));
const { parser } = require('@grafana/lezer-logql');

const results = JSON.parse(readFileSync(0, 'utf8')).map((expr) => {
  const tree = parser.parse(expr);
  const errors = [];
  const names = []; // every label name, with the node it sits in (Matcher, Labels, LabelFormatMatcher...)
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push([node.from, node.to]);
      if (node.name === 'Identifier') names.push([node.node.parent.name, expr.slice(node.from, node.to)]);
    },
  });
  const kind = tree.topNode.firstChild?.firstChild?.name ?? null; // LogQL > Expr > MetricExpr | LogExpr
  return { errors, kind, names, tree: tree.toString() };
});
process.stdout.write(JSON.stringify(results));
