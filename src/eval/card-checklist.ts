/**
 * The reporting checklists a model card answers part of: TRIPOD+AI (Collins et al., BMJ 2024;
 * 385:e078378, 27 items) and CLAIM (Mongan, Moy and Kahn, Radiology: Artificial Intelligence 2020;
 * 2(2):e200029, 42 items). Each item the card fills from osteo's records names the card section
 * that answers it; every other item needs a human (the study's setting, its reference standard,
 * its ethics and its funding are not in any file osteo reads). Item titles are shortened.
 */

/** The card's sections, as model-card.md heads them: an item that a section answers names it. */
export const cardSections = {
  intendedUse: 'Intended use',
  models: 'Architecture and weights',
  data: 'Training data',
  recipe: 'Recipe',
  performance: 'Performance',
  operatingPoints: 'Operating points',
  external: 'External validation',
  subgroups: 'Subgroups',
  limitations: 'Known limitations',
} as const;

export type CardSection = keyof typeof cardSections;

export interface ChecklistItem {
  id: string;
  title: string;
  /** The section of the card that answers it; absent: a human must. */
  section?: CardSection;
}

export interface Checklist {
  name: string;
  reference: string;
  items: readonly ChecklistItem[];
}

export const tripodAi: Checklist = {
  name: 'TRIPOD+AI',
  reference: 'Collins GS et al. TRIPOD+AI statement. BMJ 2024;385:e078378',
  items: [
    { id: '1', title: 'Title' },
    { id: '2', title: 'Abstract' },
    { id: '3a', title: 'Background: healthcare context and rationale' },
    { id: '3b', title: 'Background: target population and intended users', section: 'intendedUse' },
    { id: '3c', title: 'Background: known health inequalities' },
    { id: '4', title: 'Objectives' },
    { id: '5a', title: 'Data: sources', section: 'data' },
    { id: '5b', title: 'Data: dates of accrual' },
    { id: '6a', title: 'Participants: setting and centres' },
    { id: '6b', title: 'Participants: eligibility criteria' },
    { id: '6c', title: 'Participants: treatments received' },
    { id: '7', title: 'Data preparation (pre-processing, quality checks)', section: 'data' },
    { id: '8a', title: 'Outcome: definition and how it was assessed' },
    { id: '8b', title: 'Outcome: qualifications of the assessors' },
    { id: '8c', title: 'Outcome: blinding of its assessment' },
    { id: '9a', title: 'Predictors: choice of the initial predictors' },
    { id: '9b', title: 'Predictors: definition and measurement', section: 'models' },
    { id: '9c', title: 'Predictors: qualifications of their assessors' },
    { id: '10', title: 'Sample size' },
    { id: '11', title: 'Missing data (unreadable images)', section: 'data' },
    { id: '12a', title: 'Analysis: how the data were used (development, tuning, evaluation)', section: 'data' },
    { id: '12b', title: 'Analysis: handling of predictors (pre-processing)', section: 'models' },
    { id: '12c', title: 'Analysis: model type, building and hyperparameters', section: 'recipe' },
    { id: '12d', title: 'Analysis: heterogeneity across clusters' },
    { id: '12e', title: 'Analysis: performance measures and their uncertainty', section: 'performance' },
    { id: '12f', title: 'Analysis: model updating (recalibration)', section: 'performance' },
    { id: '12g', title: 'Analysis: how predictions were calculated in the evaluation', section: 'performance' },
    { id: '13', title: 'Class imbalance: methods to handle it', section: 'recipe' },
    { id: '14', title: 'Fairness: approaches to assess it', section: 'subgroups' },
    { id: '15', title: 'Model output and decision thresholds', section: 'operatingPoints' },
    { id: '16', title: 'Training versus evaluation data: differences', section: 'external' },
    { id: '17', title: 'Ethical approval' },
    { id: '18a', title: 'Open science: funding' },
    { id: '18b', title: 'Open science: conflicts of interest' },
    { id: '18c', title: 'Open science: protocol' },
    { id: '18d', title: 'Open science: registration' },
    { id: '18e', title: 'Open science: data sharing' },
    { id: '18f', title: 'Open science: code sharing' },
    { id: '19', title: 'Patient and public involvement' },
    { id: '20a', title: 'Participants: flow through the study', section: 'data' },
    { id: '20b', title: 'Participants: characteristics overall and per data source' },
    { id: '20c', title: 'Participants: development versus evaluation data', section: 'external' },
    { id: '21', title: 'Model development: participants and outcome events per analysis', section: 'data' },
    { id: '22', title: 'Model specification (the full model, to predict for new patients)', section: 'models' },
    { id: '23a', title: 'Model performance with confidence intervals, including key subgroups', section: 'performance' },
    { id: '23b', title: 'Model performance: heterogeneity across clusters' },
    { id: '24', title: 'Model updating results', section: 'performance' },
    { id: '25', title: 'Interpretation' },
    { id: '26', title: 'Limitations', section: 'limitations' },
    { id: '27a', title: 'Usability: how poor-quality or missing input data are handled' },
    { id: '27b', title: 'Usability: user interaction and expertise required', section: 'intendedUse' },
    { id: '27c', title: 'Future research' },
  ],
};

export const claim: Checklist = {
  name: 'CLAIM',
  reference: 'Mongan J, Moy L, Kahn CE Jr. Checklist for Artificial Intelligence in Medical Imaging (CLAIM). Radiol Artif Intell 2020;2(2):e200029',
  items: [
    { id: '1', title: 'Title: AI methodology and technology type' },
    { id: '2', title: 'Structured abstract' },
    { id: '3', title: 'Scientific and clinical background, intended use and clinical role', section: 'intendedUse' },
    { id: '4', title: 'Study objectives and hypotheses' },
    { id: '5', title: 'Prospective or retrospective study' },
    { id: '6', title: 'Study goal (model creation, feasibility, …)' },
    { id: '7', title: 'Data sources', section: 'data' },
    { id: '8', title: 'Eligibility criteria' },
    { id: '9', title: 'Data pre-processing steps', section: 'models' },
    { id: '10', title: 'Selection of data subsets', section: 'data' },
    { id: '11', title: 'Definitions of data elements' },
    { id: '12', title: 'De-identification methods' },
    { id: '13', title: 'How missing data were handled', section: 'data' },
    { id: '14', title: 'Definition of the ground truth (reference standard)' },
    { id: '15', title: 'Rationale for the reference standard' },
    { id: '16', title: 'Source of the ground-truth annotations, annotators’ qualifications' },
    { id: '17', title: 'Annotation tools' },
    { id: '18', title: 'Inter- and intrarater variability' },
    { id: '19', title: 'Intended sample size and how it was determined' },
    { id: '20', title: 'How data were assigned to partitions, with proportions', section: 'data' },
    { id: '21', title: 'Level at which the partitions are disjoint', section: 'data' },
    { id: '22', title: 'Detailed description of the model', section: 'models' },
    { id: '23', title: 'Software libraries, frameworks and packages' },
    { id: '24', title: 'Initialization of model parameters', section: 'models' },
    { id: '25', title: 'Training details (augmentation, hyperparameters, number of models)', section: 'recipe' },
    { id: '26', title: 'Method of selecting the final model', section: 'models' },
    { id: '27', title: 'Ensembling techniques', section: 'performance' },
    { id: '28', title: 'Metrics of model performance', section: 'performance' },
    { id: '29', title: 'Statistical measures of significance and uncertainty', section: 'performance' },
    { id: '30', title: 'Robustness or sensitivity analysis' },
    { id: '31', title: 'Methods for explainability or interpretability' },
    { id: '32', title: 'Validation or testing on external data', section: 'external' },
    { id: '33', title: 'Flow of participants or cases', section: 'data' },
    { id: '34', title: 'Demographic and clinical characteristics of cases in each partition', section: 'subgroups' },
    { id: '35', title: 'Performance metrics on all data partitions', section: 'performance' },
    { id: '36', title: 'Estimates of diagnostic accuracy and their precision', section: 'performance' },
    { id: '37', title: 'Failure analysis of incorrectly classified cases' },
    { id: '38', title: 'Study limitations', section: 'limitations' },
    { id: '39', title: 'Implications for practice' },
    { id: '40', title: 'Registration number and registry' },
    { id: '41', title: 'Where the full study protocol can be accessed' },
    { id: '42', title: 'Sources of funding and other support' },
  ],
};

export const checklists: readonly Checklist[] = [tripodAi, claim];
