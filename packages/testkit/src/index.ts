export * from "./build";
export * from "./cli";
export * from "./frames";
export * from "./kernel";
export * from "./netns";
export * from "./relay";
export * from "./time";
export * from "./topology";
