import { describeKernel, exchangeFrames, nsRun } from "@galette/testkit";
import { beforeAll, expect, it } from "vitest";
import {
  ActionKind,
  attachXdp,
  type BpfMap,
  BpfObject,
  detachXdp,
  GALETTE_MAX_INSTANCES,
  galetteAction,
  isBpfError,
  netnsPath,
  queryXdp,
  rootProgramObjectPath,
  u32,
  u64,
  XdpAttachment,
} from "../src/index";
import { macOf, STAMP_OFFSET, seqOf, testFrames } from "./frames";
import { compileBpf, testCleanups, testMap, waitFor } from "./helpers";

const NF_SWAP = 1;
const NF_STAMP = 2;

const cleanups = testCleanups();
const { own, defer, veth } = cleanups;
/** The device's PROG_ARRAY, shared by its NF instances. */
const progArray = () => testMap(cleanups, "prog_array", "gal_t_progs", GALETTE_MAX_INSTANCES);

let shim: string;
beforeAll(async () => {
  shim = await compileBpf("nf_shim.bpf.c");
});

/** One NF instance of the test shim sharing the device's PROG_ARRAY. */
function instance(progs: BpfMap, id: number, mode: number, action: { kind: number; arg?: number }) {
  const obj = own(
    BpfObject.load(shim, {
      rodata: { galette_instance_id: id, nf_mode: mode },
      reuseMaps: { galette_progs: progs },
    }),
  );
  obj
    .map("galette_actions")
    .typed(u32, galetteAction)
    .set(0, { kind: action.kind, arg: action.arg ?? 0 });
  const fd = obj.programFd("galette_nf");
  progs.typed(u32, u32).set(id, fd);
  return { obj, fd, counts: () => sum(obj.map("galette_counts").typed(u32, u64).getPerCpu(0) ?? []) };
}

const sum = (xs: bigint[]) => Number(xs.reduce((a, b) => a + b, 0n));

function rootProgram() {
  const root = own(BpfObject.load(rootProgramObjectPath()));
  return { root, fd: root.programFd("galette_root"), slot: root.map("galette_root_progs").typed(u32, u32) };
}

describeKernel("xdp-native XDP attach and tail-call chains", () => {
  it("attaches in native mode, refuses to clobber with noReplace, replaces atomically, detaches", async () => {
    const v = await veth("att");
    const target = { ifname: v.ifB, netns: netnsPath(v.nsB) };
    const progs = progArray();
    const a = instance(progs, 1, 0, { kind: ActionKind.pass });
    const b = instance(progs, 2, 0, { kind: ActionKind.pass });
    const idOf = (o: BpfObject) => o.programId("galette_nf");

    const link = XdpAttachment.attach(target, a.fd);
    defer(() => link.detach());
    expect(link.target.ifindex).toBe(v.ifindexB);
    expect(queryXdp(target)).toMatchObject({ progId: idOf(a.obj), drvProgId: idOf(a.obj), attachMode: 1 });

    let err: unknown;
    try {
      attachXdp(target, b.fd, { noReplace: true });
    } catch (e) {
      err = e;
    }
    expect(isBpfError(err) && err.code).toBe("EBUSY");
    expect(String(err)).toContain(`attach XDP program fd ${b.fd} to ${v.ifB}`);

    link.replace(b.fd);
    expect(queryXdp({ ifindex: v.ifindexB, netns: target.netns }).progId).toBe(idOf(b.obj));
    // a replace that expects a program no longer attached must fail and change nothing
    expect(() => attachXdp(target, a.fd, { expectedFd: a.fd })).toThrow(
      /expected old fd .*EEXIST[\s\S]*Active program does not match expected/,
    );
    expect(queryXdp(target).progId).toBe(idOf(b.obj));

    link.detach();
    expect(queryXdp(target).progId).toBe(0);

    // generic (skb) mode is an option
    attachXdp(target, a.fd, { mode: "skb" });
    expect(queryXdp(target)).toMatchObject({ skbProgId: idOf(a.obj), attachMode: 2 });
    detachXdp(target, { mode: "skb" });
    expect(queryXdp(target).progId).toBe(0);

    expect(() => attachXdp({ ifname: "gal-nope0", netns: target.netns }, a.fd)).toThrow(
      /no interface named 'gal-nope0'.*ENODEV/,
    );
    expect(() => queryXdp({ ifname: v.ifB, netns: "/run/netns/gal-missing-ns" })).toThrow(
      /gal-missing-ns.*ENOENT/,
    );
  });

  it("runs a two-NF PROG_ARRAY tail-call chain behind the root program on real frames", async () => {
    const v = await veth("tc");
    const target = { ifname: v.ifB, netns: netnsPath(v.nsB) };
    const progs = progArray();
    const first = instance(progs, 1, NF_SWAP, { kind: ActionKind.tailcall, arg: 2 });
    const second = instance(progs, 2, NF_STAMP, { kind: ActionKind.tx });
    const root = rootProgram();
    root.slot.set(0, first.fd);
    const link = XdpAttachment.attach(target, root.fd);
    defer(() => link.detach());

    const { frames, tag } = testFrames(v, 50);
    const got = await exchangeFrames(v.nsA, v.ifA, { send: frames, match: tag, expect: 50, listenMs: 2000 });
    expect(got.received).toHaveLength(50);
    for (const f of got.received) {
      expect(macOf(f, 0)).toBe(v.macA); // swapped by instance 1
      expect(macOf(f, 6)).toBe(v.macB);
      expect(f[STAMP_OFFSET]).toBe(2); // stamped by instance 2, reached by tail call
    }
    expect(got.received.map(seqOf).sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(first.counts()).toBe(50);
    expect(second.counts()).toBe(50);
  });

  it("passes traffic to the stack while the root slot is empty", async () => {
    const v = await veth("emp");
    const root = rootProgram();
    const link = XdpAttachment.attach({ ifname: v.ifB, netns: netnsPath(v.nsB) }, root.fd);
    defer(() => link.detach());
    // B's kernel answers the ping only if the root program handed the frame on (XDP_PASS)
    await nsRun(v.nsA, "ping", ["-c", "1", "-W", "2", v.ipB]);
  });

  it("swaps chains atomically under continuous traffic: every frame goes through one chain, none lost", async () => {
    const v = await veth("swp");
    const target = { ifname: v.ifB, netns: netnsPath(v.nsB) };
    const progs = progArray();
    const chainA = instance(progs, 1, NF_SWAP | NF_STAMP, { kind: ActionKind.tx });
    const chainB = instance(progs, 2, NF_SWAP | NF_STAMP, { kind: ActionKind.tx });
    const root = rootProgram();
    root.slot.set(0, chainA.fd);
    const link = XdpAttachment.attach(target, root.fd);
    defer(() => link.detach());

    const total = 1500;
    const { frames, tag } = testFrames(v, total);
    const exchange = exchangeFrames(v.nsA, v.ifA, {
      send: frames,
      match: tag,
      expect: total,
      listenMs: 3000,
      pps: 3000,
    });
    // swap once chain A has demonstrably carried part of the traffic
    expect(await waitFor(() => chainA.counts() >= 300, 10_000, 5)).toBe(true);
    root.slot.set(0, chainB.fd);
    const got = await exchange;

    expect(got.sent).toBe(total);
    expect(got.received).toHaveLength(total);
    const stamps = got.received.map((f) => f[STAMP_OFFSET]);
    expect(new Set(stamps)).toEqual(new Set([1, 2]));
    // frames are sent in order: once chain B is seen, chain A never handles a later frame
    const bySeq = [...got.received].sort((x, y) => seqOf(x) - seqOf(y)).map((f) => f[STAMP_OFFSET]);
    const firstB = bySeq.indexOf(2);
    expect(bySeq.slice(firstB).every((s) => s === 2)).toBe(true);
    expect(chainA.counts() + chainB.counts()).toBe(total);
  });
});
