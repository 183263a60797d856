// What both TypeScript client scripts do once connected: list the tools (following
// nextCursor), call the fixture tools, and record what came back.
//
// `callWithProgress(params, onprogress)` hides the one difference between the SDKs' callTool
// signatures (1.x takes a result schema before the options; 2.x does not).

const texts = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text);
export const summary = (result) => ({ isError: result.isError ?? false, texts: texts(result) });

export async function exercise(client, callWithProgress, elicitations) {
  const observed = {};
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    tools.push(...page.tools.map((tool) => tool.name));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  observed.tools = tools;

  observed.simpleText = summary(await client.callTool({ name: 'test_simple_text', arguments: {} }));

  const updates = [];
  const withProgress = await callWithProgress(
    { name: 'test_tool_with_progress', arguments: {} },
    (p) => updates.push(p),
  );
  observed.progress = {
    ...summary(withProgress),
    values: updates.map((p) => p.progress),
    updates,
  };

  const elicited = await client.callTool({
    name: 'test_elicitation',
    arguments: { message: 'Shall we proceed?' },
  });
  observed.elicitation = { ...summary(elicited), requests: elicitations };

  observed.errorHandling = summary(
    await client.callTool({ name: 'test_error_handling', arguments: {} }),
  );
  return observed;
}
