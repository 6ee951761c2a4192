/** Class order everywhere in osteo (labels 0, 1, 2): the Kaggle folder names. */
export const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'] as const;
export type ClassName = (typeof classNames)[number];
export const numClasses = classNames.length;

/** The label of a class folder name (exact spelling), or -1. */
export function classIndex(name: string): number {
  return (classNames as readonly string[]).indexOf(name);
}
