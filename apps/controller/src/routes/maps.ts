import { MapEntriesSignature, type MapEntry, SetMapEntriesRequest } from "@galette/protocol";
import type { FastifyInstance } from "fastify";
import { RequestError } from "../control";
import { access } from "../plugins/auth";
import { parse } from "../plugins/errors";
import { BODY_LIMITS } from "../plugins/limits";
import { recordMapSignature } from "../releases";

type Params = { chain: string; map: string };

/** Map entries of a chain's maps: read them (read), set them (deploy), never more than the map holds. */
export async function mapsRoutes(app: FastifyInstance): Promise<void> {
  const { data } = app.galette;

  const mapOf = async (chainName: string, mapId: string) => {
    const chain = await data.repo.getChainVersion(chainName);
    if (!chain) throw new RequestError(404, `chain ${chainName} does not exist`);
    const map = chain.graph.maps.find((m) => m.id === mapId);
    if (!map) {
      const known = chain.graph.maps.map((m) => m.id).join(", ") || "none";
      throw new RequestError(404, `chain ${chainName} has no map "${mapId}" (its maps: ${known})`);
    }
    return map;
  };

  app.get<{ Params: Params }>(
    "/v1/chains/:chain/maps/:map/entries",
    { config: { access: access.operator("read") } },
    async (request) => {
      await mapOf(request.params.chain, request.params.map);
      return {
        chain: request.params.chain,
        map: request.params.map,
        entries: await data.repo.getMapEntries(request.params.chain, request.params.map),
      };
    },
  );

  app.put<{ Params: Params }>(
    "/v1/chains/:chain/maps/:map/entries",
    { config: { access: access.operator("deploy") }, bodyLimit: BODY_LIMITS.mapEntries },
    async (request) => {
      const { chain, map: mapId } = request.params;
      const map = await mapOf(chain, mapId);
      const body = parse(SetMapEntriesRequest, request.body, "map entries request");
      const { signed } = parse(MapEntriesSignature, request.body, "map entries signature");
      const problems: string[] = [];
      body.set.forEach((entry: MapEntry, i: number) => {
        if (entry.key.length / 2 !== map.keySize)
          problems.push(
            `set.${i}.key: ${entry.key.length / 2} bytes, map "${mapId}" has ${map.keySize}-byte keys`,
          );
        if (entry.value.length / 2 !== map.valueSize)
          problems.push(
            `set.${i}.value: ${entry.value.length / 2} bytes, map "${mapId}" has ${map.valueSize}-byte values`,
          );
      });
      body.delete.forEach((key: string, i: number) => {
        if (key.length / 2 !== map.keySize)
          problems.push(`delete.${i}: ${key.length / 2} bytes, map "${mapId}" has ${map.keySize}-byte keys`);
      });
      if (problems.length > 0) throw new RequestError(400, `invalid map entries: ${problems[0]}`, problems);
      await data.repo.transaction(async (tx) => {
        // The device's map holds maxEntries; more would fail there, entry by entry, after the push.
        const keys = new Set((await tx.getMapEntries(chain, mapId)).map((e) => e.key));
        for (const entry of body.set) keys.add(entry.key);
        for (const key of body.delete) keys.delete(key);
        if (keys.size > map.maxEntries) {
          throw new RequestError(
            400,
            `map "${mapId}" holds at most ${map.maxEntries} entries; this change would leave ${keys.size}`,
          );
        }
        const at = new Date().toISOString();
        await tx.setMapEntries(chain, mapId, body.set, body.delete, at);
        await recordMapSignature(tx, chain, mapId, signed, at);
      });
      await app.notifications.assignmentChanged(
        (await data.repo.devicesAssignedTo(chain)).map((d) => d.name),
        "map entries",
      );
      return { chain, map: mapId, entries: await data.repo.getMapEntries(chain, mapId) };
    },
  );
}
